"""whom a complaint is about: `case.complaint_target` ("staff" / "other") and the staff positions it names

A complaint about the community's own people is routed above them; transfers and reopens read these columns so
the case never reaches the grid's workers or the named positions later either.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 05:00:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('case', schema=None) as batch_op:
        batch_op.add_column(sa.Column('complaint_target', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=True))
        batch_op.add_column(sa.Column('complaint_roles', sa.JSON(), nullable=False, server_default='[]'))


def downgrade() -> None:
    with op.batch_alter_table('case', schema=None) as batch_op:
        batch_op.drop_column('complaint_roles')
        batch_op.drop_column('complaint_target')
