"""WeChat channels: `channel_user` maps the numeric alias the dialogue and the outboxes use to a WeChat OpenID or
WeCom UserID (with the numbered menu last shown and the last inbound time), and `channel_token` holds each
channel's API access token, shared by every replica and refreshed under a row lock

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 14:30:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'channel_user',
        sa.Column('alias', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column('user_ref', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column('menu', sa.JSON(), nullable=False),
        sa.Column('menu_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_inbound_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('alias'),
        sa.UniqueConstraint('channel', 'user_ref', name='uq_channel_user'),
    )
    op.create_table(
        'channel_token',
        sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column('token', sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('refreshed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('refreshes', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('name'),
    )


def downgrade() -> None:
    op.drop_table('channel_token')
    op.drop_table('channel_user')
