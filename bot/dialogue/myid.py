"""`/myid`: the person's own channel, id and role, on every channel and in every role.

Owns: that one reply (an admin needs a new worker's id for /register_worker; a person setting up a second
terminal window needs their own). Must not: say anything about another person or account.
"""

from __future__ import annotations

from bot.dialogue.turn import Turn
from casestore.models import Worker

MYID = "您的身份\n渠道：{channel}\nID：{id}\n角色：{role}"
ROLE_RESIDENT = "居民"
ROLE_WORKER = "网格员（{name}）"
ROLE_ADMIN = "管理员"


def show_id(turn: Turn, worker: Worker | None = None) -> None:
    """Reply with the channel, the id and the role of the person who asked (`worker`: the worker they are)."""
    roles = [ROLE_WORKER.format(name=worker.name) if worker is not None else ROLE_RESIDENT]
    if turn.is_admin:
        roles.append(ROLE_ADMIN)
    turn.say(MYID.format(channel=turn.channel, id=turn.external_id, role="、".join(roles)))
