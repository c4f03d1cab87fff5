"""the reply outbox; handler failures counted apart from handler starts; no raw personal data left in the inbox

Replies to inbound updates become rows of `outboundreply`, written in the transaction that marks the update
handled and delivered by the channel's sender. `inboundupdate.attempts` now counts handler starts and the new
`failures` the starts whose handler raised (before, the insert itself counted as an attempt and a crash used one
up). Existing rows are brought to the new rules: the attempts of unhandled rows start again from zero, a handled
row's content goes, and what an unhandled or failed row keeps is masked (phone and ID numbers).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 02:00:00
"""
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
import sqlmodel
from alembic import op

from policies.masking import mask_text

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

_KEEP = frozenset({"data", "file_id", "file_unique_id", "chat_instance", "inline_message_id", "type",
                   "mime_type", "language_code"})


def _masked(value: Any, key: str = "") -> Any:
    """The same rule as bot.channels.inbox.mask_update (migrations must not import bot/)."""
    if isinstance(value, dict):
        return {k: _masked(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, key) for v in value]
    if isinstance(value, str) and key not in _KEEP:
        return mask_text(value)
    return value


def upgrade() -> None:
    op.create_table(
        'outboundreply',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column('update_id', sa.BigInteger(), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('chat_id', sa.BigInteger(), nullable=False),
        sa.Column('payload', sa.JSON(), nullable=False),
        sa.Column('state', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('parts_sent', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('channel', 'update_id', 'position', name='uq_outbound_reply'),
    )
    with op.batch_alter_table('outboundreply', schema=None) as batch_op:
        batch_op.create_index('ix_outboundreply_open', ['channel', 'state', 'chat_id'], unique=False)
    with op.batch_alter_table('inboundupdate', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failures', sa.Integer(), nullable=False, server_default='0'))

    conn = op.get_bind()
    now = datetime.now(UTC)
    table = sa.table('inboundupdate', sa.column('id', sa.Integer()), sa.column('payload', sa.JSON()),
                     sa.column('error', sa.String()), sa.column('state', sa.String()),
                     sa.column('channel', sa.String()), sa.column('update_id', sa.BigInteger()),
                     sa.column('handled_at', sa.DateTime(timezone=True)),
                     sa.column('erased_at', sa.DateTime(timezone=True)))
    conn.execute(sa.text("UPDATE inboundupdate SET attempts = 0 WHERE state = 'received'"))
    conn.execute(sa.update(table).where(table.c.state == 'done').values(
        payload={}, erased_at=sa.func.coalesce(table.c.erased_at, now)))
    outbox = sa.table('outboundreply', sa.column('channel', sa.String()), sa.column('update_id', sa.BigInteger()),
                      sa.column('position', sa.Integer()), sa.column('chat_id', sa.BigInteger()),
                      sa.column('payload', sa.JSON()), sa.column('state', sa.String()),
                      sa.column('attempts', sa.Integer()), sa.column('parts_sent', sa.Integer()),
                      sa.column('created_at', sa.DateTime(timezone=True)),
                      sa.column('next_attempt_at', sa.DateTime(timezone=True)))
    rows = conn.execute(sa.select(table.c.id, table.c.payload, table.c.error, table.c.state, table.c.channel,
                                  table.c.update_id)
                        .where(table.c.state.in_(['received', 'failed']))).all()
    for row in rows:
        payload = dict(row.payload or {})
        reply, chat_id = payload.pop("reply", None), _chat_id(payload.get("update") or {})
        if row.state == 'received' and reply and chat_id is not None:
            # the old design's answer, saved but not sent before a stop: it goes out through the outbox, and the
            # engine (whose writes were committed with that answer) is not asked a second time
            conn.execute(sa.insert(outbox), [
                {"channel": row.channel, "update_id": row.update_id, "position": i, "chat_id": chat_id,
                 "payload": message, "state": "pending", "attempts": 0, "parts_sent": 0, "created_at": now,
                 "next_attempt_at": now} for i, message in enumerate(reply)])
            conn.execute(sa.update(table).where(table.c.id == row.id).values(
                state='done', payload={}, error=None, handled_at=now, erased_at=now))
            continue
        conn.execute(sa.update(table).where(table.c.id == row.id).values(
            payload=_masked(payload), error=mask_text(row.error) if row.error else None))


def _chat_id(update: dict[str, Any]) -> int | None:
    message = update.get("message") or (update.get("callback_query") or {}).get("message") or {}
    chat = message.get("chat") or {}
    if isinstance(chat.get("id"), int):
        return int(chat["id"])
    sender = (update.get("callback_query") or {}).get("from") or {}
    return sender.get("id") if isinstance(sender.get("id"), int) else None


def downgrade() -> None:
    with op.batch_alter_table('inboundupdate', schema=None) as batch_op:
        batch_op.drop_column('failures')
    with op.batch_alter_table('outboundreply', schema=None) as batch_op:
        batch_op.drop_index('ix_outboundreply_open')
    op.drop_table('outboundreply')
