"""Factories for the dialogue tests: `Incoming` updates for residents, workers and buttons; residents; cases;
and the real classifier and knowledge service, built once per test process (training/ingesting takes seconds).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from bot.dialogue.types import Incoming, Reply
from bot.settings import PROJECT_ROOT, Settings
from casestore.accounts import get_or_create_resident, get_resident_by_account, get_worker_by_account
from casestore.clock import Clock
from casestore.db import session_scope
from casestore.dispatch import dispatch_pending
from casestore.models import Resident, Worker
from casestore.notify import Button, RecordingNotifier
from casestore.permissions import Actor, actor_for
from casestore.residents import bind_address, record_consent
from policies.models import Policies

# the channel of the engine-level tests: the workers of grids.yaml hold Telegram accounts with these ids
CHANNEL = "telegram"
RESIDENT_ID = 555001
OTHER_RESIDENT_ID = 555002
FU01_FULL_TIME = 900100  # 芙蓉社区第一网格专职网格员 (grids.yaml)
FU02_FULL_TIME = 900104
FU01_VOLUNTEER_LEAD = 900103
FURONG_MEDIATOR = 900126
FURONG_DUTY_DESK = 900125

_ids = itertools.count(1)


# ---------------------------------------------------------------- incoming updates
def text(body: str, user: int = RESIDENT_ID, channel: str = CHANNEL) -> Incoming:
    return Incoming(channel=channel, user_id=user, chat_id=user, kind="text", text=body, display_name="张阿姨")


def command(cmd: str, args: str = "", user: int = RESIDENT_ID, channel: str = CHANNEL) -> Incoming:
    return Incoming(channel=channel, user_id=user, chat_id=user, kind="command", text=f"/{cmd} {args}".strip(),
                    command=cmd, args=args)


def press(button: Button, user: int = RESIDENT_ID, channel: str = CHANNEL) -> Incoming:
    return Incoming(channel=channel, user_id=user, chat_id=user, kind="button", button=button)


def button(action: str, case_code: str | None = None, arg: str | None = None, label: str = "",
           user: int = RESIDENT_ID) -> Incoming:
    return press(Button(label or action, action, case_code, arg), user=user)


def photo(caption: str = "", user: int = RESIDENT_ID) -> Incoming:
    return Incoming(channel=CHANNEL, user_id=user, chat_id=user, kind="photo", text=caption,
                    photo_file_id=f"photo-{next(_ids)}")


def location(lat: float = 36.66, lng: float = 117.02, user: int = RESIDENT_ID) -> Incoming:
    return Incoming(channel=CHANNEL, user_id=user, chat_id=user, kind="location", location=(lat, lng))


def unsupported(kind: str = "sticker", user: int = RESIDENT_ID) -> Incoming:
    return Incoming(channel=CHANNEL, user_id=user, chat_id=user, kind="unsupported", unsupported_type=kind)


# ---------------------------------------------------------------- replies
def report_through(dlg: Any, message: str) -> list[str]:
    """Send a report and answer the form's usual questions (skip the photo, confirm): what the bot said, in order."""
    said = [all_text(dlg.handle(text(message)))]
    for _ in range(4):
        if "照片" in said[-1] and "跳过" in said[-1]:
            said.append(all_text(dlg.handle(text("跳过"))))
        elif "我帮您登记" in said[-1]:
            said.append(all_text(dlg.handle(text("对"))))
        else:
            break
    return said


def all_text(reply: Reply) -> str:
    return "\n".join(m.text for m in reply.messages)


def buttons_of(reply: Reply) -> list[Button]:
    return [b for m in reply.messages for row in m.buttons for b in row]


def find_button(reply: Reply, label: str) -> Button:
    for b in buttons_of(reply):
        if b.label == label:
            return b
    raise AssertionError(f"no button {label!r} in {[b.label for b in buttons_of(reply)]}")


# ---------------------------------------------------------------- residents and cases
def make_resident(engine: Engine, policies: Policies, *, user: int = RESIDENT_ID, clock: Clock,
                  estate: str | None = "芙蓉小区", building: int | None = 3, unit: int | None = 2,
                  consent: bool = True, channel: str = CHANNEL) -> Resident:
    """A resident row, consented and bound to an address unless told otherwise."""
    with session_scope(engine) as session:
        r = get_or_create_resident(session=session, channel=channel, external_id=user, now=clock.now())
        if consent:
            record_consent(session=session, resident=r, now=clock.now())
        if estate and building:
            bind_address(session=session, resident=r, grids=policies.grids, estate=estate, building=building,
                         unit=unit, now=clock.now())
        return r


def pushes(engine: Engine, clock: Clock) -> RecordingNotifier:
    """Deliver the pending Notification rows through a RecordingNotifier and return it."""
    notifier = RecordingNotifier()
    asyncio.run(dispatch_pending(engine=engine, notifier=notifier, clock=clock))
    return notifier


# ---------------------------------------------------------------- the real AI parts, built once
@dataclass
class SharedAI:
    classifier: Any
    knowledge: Any


_shared: SharedAI | None = None
_lock = threading.Lock()


AI_CACHE = PROJECT_ROOT / "var" / "test-cache"


def shared_ai(root: Path) -> SharedAI:
    """The real classifier (trained) and knowledge service (ingested), once per test process.

    The trained model and the passage-vector cache live in var/test-cache (content-keyed, so reuse is safe
    and a rerun takes seconds); the Chroma index is fresh under `root` every run."""
    global _shared
    with _lock:
        if _shared is None:
            from bot.understanding import load_classifier
            from knowledge.service import build_knowledge_service

            settings = Settings(_env_file=None, database_url=f"sqlite:///{root / 'unused.db'}",  # type: ignore[call-arg]
                                var_dir=AI_CACHE, chroma_dir=root / "chroma")
            _shared = SharedAI(classifier=load_classifier(settings), knowledge=build_knowledge_service(settings))
        return _shared


# Two small knowledge documents in the shipped format (front matter, headings), for knowledge tests.
PERMIT = """---
title: 居住证办理指南
source: 示例
issuer: 示例公安局
effective_date: 2025-01-01
tags: [居住证, 外地人]
category: certificates
---
# 居住证办理指南

## 所需材料

1. 本人居民身份证原件。
2. 住所证明：租房提供房屋租赁合同。

## 签注与有效期

居住证需要每年签注一次。持证人应在有效期满前30日内签注。逾期未签注的，居住证暂停使用。
"""

HEATING = """---
title: 冬季供暖服务指南
source: 示例
effective_date: 2024-10-01
tags: [供暖]
category: housing
---
# 冬季供暖服务指南

## 室温标准

供暖期间卧室室内温度不低于18℃。室温不达标的可以拨打供热单位客服电话报修。
"""


def write_sample_docs(where: Path) -> Path:
    """`where` holding residence-permit.md and heating.md (created if missing)."""
    where.mkdir(parents=True, exist_ok=True)
    (where / "residence-permit.md").write_text(PERMIT, encoding="utf-8")
    (where / "heating.md").write_text(HEATING, encoding="utf-8")
    return where


# ---------------------------------------------------------------- people by channel account
def resident_of(session: Session, user: int, channel: str = CHANNEL) -> Resident | None:
    return get_resident_by_account(session=session, channel=channel, external_id=user)


def worker_of(session: Session, user: int, channel: str = CHANNEL) -> Worker:
    worker = get_worker_by_account(session=session, channel=channel, external_id=user)
    assert worker is not None, f"no worker holds {channel}:{user}"
    return worker


def actor(session: Session, user: int, *, admin: bool = False, channel: str = CHANNEL) -> Actor:
    """The person behind a channel account, as casestore actions take them."""
    return actor_for(session=session, channel=channel, external_id=user, is_admin=admin)
