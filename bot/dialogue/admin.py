"""Admin commands: /stats, /broadcast <grid> <text>, /register_worker <telegram_id> <grid> <role>.

Owns: parsing the arguments and the short replies. Broadcasts are recorded as Notification rows (the
outbound queue); the channel's rate limiter spaces them out. Must not: compute statistics (casestore.stats).
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from bot.dialogue import texts
from bot.dialogue.engine import Turn
from bot.dialogue.types import Incoming
from casestore.dispatch import record_notification
from casestore.models import Grid, Resident, Worker
from casestore.notify import OutboundMessage
from casestore.org import get_worker_by_telegram
from policies.masking import mask_text
from policies.taxonomy import ROLE_NAMES_ZH, Role

log = logging.getLogger(__name__)

ADMIN_ONLY = frozenset({"stats", "broadcast", "register_worker"})
BROADCAST_MAX = 1000


def handles(incoming: Incoming) -> bool:
    return incoming.kind == "command" and incoming.command in ADMIN_ONLY


def handle(turn: Turn) -> None:
    cmd = turn.incoming.command
    if cmd == "stats":
        _stats(turn)
    elif cmd == "broadcast":
        _broadcast(turn)
    elif cmd == "register_worker":
        _register_worker(turn)


def _stats(turn: Turn) -> None:
    from casestore import stats

    summary = stats.summary_text(session=turn.session, now=turn.now, tz=turn.services.settings.tz,
                                 taxonomy=turn.services.policies.taxonomy)
    turn.say(f"{texts.STATS_HEADER}\n{summary}")


def _broadcast(turn: Turn) -> None:
    grid_id, _, body = turn.incoming.args.partition(" ")
    grid_id, body = grid_id.strip().upper(), body.strip()
    if not grid_id or not body:
        turn.say(texts.BROADCAST_USAGE)
        return
    grid = turn.session.get(Grid, grid_id)
    if grid is None:
        turn.say(texts.BROADCAST_UNKNOWN_GRID.format(grid=grid_id))
        return
    # personal data never goes out to a whole grid, even when an admin types it
    message = OutboundMessage(text=texts.BROADCAST_PREFIX + mask_text(body)[:BROADCAST_MAX])
    stmt = select(Resident).where(Resident.grid_id == grid_id, Resident.consent_at.is_not(None))  # type: ignore[union-attr]
    residents = list(turn.session.execute(stmt).scalars())
    level = int(turn.now.timestamp())  # one broadcast: (kind, level, recipient) unique
    sent = 0
    for r in residents:
        if r.telegram_id is None:
            continue
        if record_notification(session=turn.session, case_id=None, kind="broadcast", level=level,
                               recipient=f"resident:{r.id}", chat_id=r.telegram_id, message=message, now=turn.now):
            sent += 1
    log.info("broadcast to %s by admin cid=%s: %s recipients", grid_id, turn.cid, sent)
    turn.say(texts.BROADCAST_DONE.format(grid=grid.name, n=sent))


def _register_worker(turn: Turn) -> None:
    parts = turn.incoming.args.split()
    if len(parts) != 3 or not parts[0].isdigit():
        turn.say(texts.REGISTER_USAGE)
        return
    telegram_id, grid_id, role = int(parts[0]), parts[1].upper(), parts[2].lower()
    if role not in {r.value for r in Role}:
        turn.say(texts.REGISTER_BAD_ROLE.format(roles="、".join(r.value for r in Role)))
        return
    grid = turn.session.get(Grid, grid_id)
    if grid is None:
        turn.say(texts.BROADCAST_UNKNOWN_GRID.format(grid=grid_id))
        return
    role_zh = ROLE_NAMES_ZH[Role(role)]
    worker = get_worker_by_telegram(session=turn.session, telegram_id=telegram_id)
    if worker is None:
        worker = Worker(name=f"{grid.name}{role_zh}", role=role, telegram_id=telegram_id)
    worker.role, worker.grid_id, worker.community_id, worker.active = role, grid.id, grid.community_id, True
    turn.session.add(worker)
    turn.session.flush()
    turn.say(texts.REGISTER_DONE.format(name=worker.name, grid=grid.name, role=role_zh, tid=telegram_id))
