"""inbox retention: when an update's content was erased

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 05:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('inboundupdate', schema=None) as batch_op:
        batch_op.add_column(sa.Column('erased_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_inboundupdate_erased_at'), ['erased_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('inboundupdate', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inboundupdate_erased_at'))
        batch_op.drop_column('erased_at')
