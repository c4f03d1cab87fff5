"""the review queue: knowledge answers that missed (not found, 没用, 转人工 right after, a clarification unpicked)

One `reviewitem` row per miss, its question and the resident's next message masked. An admin resolves it with an
FAQ entry, a scope example or a lexicon term (`quanbot review`), and the resolved document feeds the `reviewed`
regression eval.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 01:00:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'reviewitem',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
        sa.Column('question', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column('retrieved', sa.JSON(), nullable=False),
        sa.Column('answer_mode', sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
        sa.Column('resident_id', sa.Integer(), nullable=True),
        sa.Column('next_message', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column('resolution', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
        sa.Column('resolved_doc', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column('resolved_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['resident_id'], ['resident.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('reviewitem', schema=None) as batch_op:
        batch_op.create_index('ix_reviewitem_status_created', ['status', 'created_at'], unique=False)
        batch_op.create_index('ix_reviewitem_resident_created', ['resident_id', 'created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('reviewitem', schema=None) as batch_op:
        batch_op.drop_index('ix_reviewitem_resident_created')
        batch_op.drop_index('ix_reviewitem_status_created')
    op.drop_table('reviewitem')
