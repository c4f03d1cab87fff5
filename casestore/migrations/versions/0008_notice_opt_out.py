"""notices (未诉先办): the `notice` table, residents' opt-out by topic, and one delivery per resident

`notice` holds each staff notice once, unique on its idempotency key. `resident.notice_opt_out` lists the topics a
resident asked not to receive. `uq_notification_nocase_once` makes a push of no case (a notice, a broadcast) unique
on (kind, level, recipient): `uq_notification_once` includes case_id, and NULLs never conflict there.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 08:10:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('resident', schema=None) as batch_op:
        batch_op.add_column(sa.Column('notice_opt_out', sa.JSON(), nullable=False, server_default='[]'))

    op.create_table('notice',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('topic', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('text', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('target', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('hotspot_id', sa.Integer(), nullable=True),
    sa.Column('recipients', sa.Integer(), nullable=False),
    sa.Column('opted_out', sa.Integer(), nullable=False),
    sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['hotspot_id'], ['hotspot.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key', name='uq_notice_key')
    )

    # an old broadcast repeated within one second could have left twins: keep the first of each
    op.execute("DELETE FROM notification WHERE case_id IS NULL AND id NOT IN "
               "(SELECT MIN(id) FROM notification WHERE case_id IS NULL GROUP BY kind, level, recipient)")
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.create_index('uq_notification_nocase_once', ['kind', 'level', 'recipient'], unique=True,
                              postgresql_where=sa.text('case_id IS NULL'), sqlite_where=sa.text('case_id IS NULL'))


def downgrade() -> None:
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.drop_index('uq_notification_nocase_once')
    op.drop_table('notice')
    with op.batch_alter_table('resident', schema=None) as batch_op:
        batch_op.drop_column('notice_opt_out')
