"""Admin commands: /stats, /broadcast <grid> <text>, /register_worker <user id> <grid> <role>.

Owns: parsing the arguments and the short replies. Broadcasts and registrations are casestore functions
(each writes its audit event). Must not: compute statistics (casestore.stats) or write rows itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.dialogue import texts
from bot.dialogue.turn import Turn
from bot.dialogue.types import Incoming
from casestore import stats
from casestore.broadcasts import broadcast_to_grid
from casestore.errors import DomainError
from casestore.models import Grid
from casestore.notify import OutboundMessage
from casestore.org import register_worker
from policies.masking import mask_text
from policies.taxonomy import ROLE_NAMES_ZH, Role

log = logging.getLogger(__name__)

BROADCAST_MAX = 1000


def _actor(turn: Turn) -> str:
    return f"admin:{turn.channel}:{turn.external_id}"


def _stats(turn: Turn) -> None:
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
    sent = broadcast_to_grid(session=turn.session, grid_id=grid.id, message=message, actor=_actor(turn), now=turn.now)
    log.info("broadcast to %s by admin cid=%s: %s recipients", grid_id, turn.cid, sent)
    turn.say(texts.BROADCAST_DONE.format(grid=grid.name, n=sent))


def _register_worker(turn: Turn) -> None:
    parts = turn.incoming.args.split()
    if len(parts) != 3 or not parts[0].isdigit():
        turn.say(texts.REGISTER_USAGE)
        return
    external_id, grid_id, role_id = parts[0], parts[1].upper(), parts[2].lower()
    if role_id not in {r.value for r in Role}:
        turn.say(texts.REGISTER_BAD_ROLE.format(roles="、".join(r.value for r in Role)))
        return
    grid = turn.session.get(Grid, grid_id)
    if grid is None:
        turn.say(texts.BROADCAST_UNKNOWN_GRID.format(grid=grid_id))
        return
    role = Role(role_id)
    try:
        with turn.session.begin_nested():
            # the admin registers an account of the channel they are on
            worker = register_worker(session=turn.session, channel=turn.channel, external_id=external_id, grid=grid,
                                     role=role, actor=_actor(turn), now=turn.now)
    except DomainError as exc:
        turn.say(exc.user_message)
        return
    turn.say(texts.REGISTER_DONE.format(name=worker.name, grid=grid.name, role=ROLE_NAMES_ZH[role], tid=external_id))


COMMANDS: dict[str, Callable[[Turn], None]] = {
    "stats": _stats, "broadcast": _broadcast, "register_worker": _register_worker,
}
ADMIN_ONLY = frozenset(COMMANDS)


def handles(incoming: Incoming) -> bool:
    return incoming.kind == "command" and incoming.command in ADMIN_ONLY


def handle(turn: Turn) -> None:
    COMMANDS[turn.incoming.command or ""](turn)
