"""identity is (channel, external_id): channel accounts for residents and workers; audit of non-case changes

Residents and workers were found by a Telegram-shaped `telegram_id` column, so terminal user 555001 and
Telegram user 555001 were one person. Each existing id becomes one `account` row (the resident's stored
channel, or Telegram for workers) and the old columns go. Notifications learn which channel delivers them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 01:00:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'account',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column('external_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('resident_id', sa.Integer(), nullable=True),
        sa.Column('worker_id', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['resident_id'], ['resident.id']),
        sa.ForeignKeyConstraint(['worker_id'], ['worker.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('channel', 'external_id', name='uq_account_channel_external'),
    )
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_account_resident_id'), ['resident_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_account_worker_id'), ['worker_id'], unique=False)
    op.create_table(
        'auditevent',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('data', sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('auditevent', schema=None) as batch_op:
        batch_op.create_index('ix_auditevent_subject', ['subject', 'at'], unique=False)

    # carry every existing id over as an account of its channel. Workers first: a resident later registered as a
    # worker (/register_worker) kept both rows with one id, and the old code took such a person for the worker, so
    # the worker keeps the account (the resident row and its cases stay, without it).
    op.execute(sa.text(
        "INSERT INTO account (channel, external_id, worker_id, created_at) "
        "SELECT 'telegram', CAST(telegram_id AS VARCHAR(64)), id, CURRENT_TIMESTAMP FROM worker "
        "WHERE telegram_id IS NOT NULL"))
    op.execute(sa.text(
        "INSERT INTO account (channel, external_id, resident_id, created_at, last_seen_at) "
        "SELECT channel, CAST(telegram_id AS VARCHAR(64)), id, created_at, created_at FROM resident r "
        "WHERE telegram_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM account a WHERE a.channel = r.channel "
        "AND a.external_id = CAST(r.telegram_id AS VARCHAR(64)))"))

    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.add_column(sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False,
                                      server_default='telegram'))
        batch_op.alter_column('chat_id', type_=sa.BigInteger(), existing_nullable=True)
    op.execute(sa.text(
        "UPDATE notification SET channel = (SELECT r.channel FROM resident r "
        "WHERE notification.recipient = 'resident:' || CAST(r.id AS VARCHAR(20))) "
        "WHERE recipient LIKE 'resident:%' AND EXISTS (SELECT 1 FROM resident r "
        "WHERE notification.recipient = 'resident:' || CAST(r.id AS VARCHAR(20)))"))
    with op.batch_alter_table('conversation', schema=None) as batch_op:
        batch_op.alter_column('user_id', type_=sa.BigInteger(), existing_nullable=False)
    with op.batch_alter_table('inboundupdate', schema=None) as batch_op:
        batch_op.alter_column('update_id', type_=sa.BigInteger(), existing_nullable=False)

    with op.batch_alter_table('resident', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_resident_telegram_id'))
        batch_op.drop_column('telegram_id')
        batch_op.drop_column('channel')
    with op.batch_alter_table('worker', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_worker_telegram_id'))
        batch_op.drop_column('telegram_id')


def downgrade() -> None:
    with op.batch_alter_table('worker', schema=None) as batch_op:
        batch_op.add_column(sa.Column('telegram_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_worker_telegram_id'), ['telegram_id'], unique=True)
    with op.batch_alter_table('resident', schema=None) as batch_op:
        batch_op.add_column(sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(), nullable=False,
                                      server_default='telegram'))
        batch_op.add_column(sa.Column('telegram_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_resident_telegram_id'), ['telegram_id'], unique=True)
    # the first account of each person goes back into the old column (a second channel is lost)
    op.execute(sa.text(
        "UPDATE worker SET telegram_id = (SELECT CAST(MIN(a.external_id) AS INTEGER) FROM account a "
        "WHERE a.worker_id = worker.id AND a.channel = 'telegram')"))
    op.execute(sa.text(
        "UPDATE resident SET telegram_id = (SELECT CAST(MIN(a.external_id) AS INTEGER) FROM account a "
        "WHERE a.resident_id = resident.id), channel = COALESCE((SELECT MIN(a.channel) FROM account a "
        "WHERE a.resident_id = resident.id), 'telegram')"))
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.drop_column('channel')
    with op.batch_alter_table('auditevent', schema=None) as batch_op:
        batch_op.drop_index('ix_auditevent_subject')
    op.drop_table('auditevent')
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_account_worker_id'))
        batch_op.drop_index(batch_op.f('ix_account_resident_id'))
    op.drop_table('account')
