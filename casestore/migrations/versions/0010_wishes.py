"""微心愿: the `wish` table (one per wish case): kind, status, the masked public text, who claimed it and when,
and its deadlines as columns (due_at, next_checkin_at, alerted_at)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 15:00:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('wish',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('resident_id', sa.Integer(), nullable=True),
    sa.Column('grid_id', sqlmodel.sql.sqltypes.AutoString(length=12), nullable=True),
    sa.Column('community_id', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('category', sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
    sa.Column('text', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('claimed_by', sa.Integer(), nullable=True),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('fulfilled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('next_checkin_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('checkins', sa.Integer(), nullable=False),
    sa.Column('progress_notes', sa.Integer(), nullable=False),
    sa.Column('alerted_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['case_id'], ['case.id'], ),
    sa.ForeignKeyConstraint(['claimed_by'], ['worker.id'], ),
    sa.ForeignKeyConstraint(['grid_id'], ['grid.id'], ),
    sa.ForeignKeyConstraint(['resident_id'], ['resident.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('case_id', name='uq_wish_case')
    )
    with op.batch_alter_table('wish', schema=None) as batch_op:
        batch_op.create_index('ix_wish_grid_id', ['grid_id'], unique=False)
        batch_op.create_index('ix_wish_community_id', ['community_id'], unique=False)
        batch_op.create_index('ix_wish_status', ['status'], unique=False)
        batch_op.create_index('ix_wish_due_at', ['due_at'], unique=False)
        batch_op.create_index('ix_wish_claimed_by', ['claimed_by'], unique=False)
        batch_op.create_index('ix_wish_next_checkin_at', ['next_checkin_at'], unique=False)


def downgrade() -> None:
    op.drop_table('wish')
