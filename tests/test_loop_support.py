"""Shared builders for the closed-loop tests (no tests here): reports, residents, the sample street's ids."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from casestore.accounts import get_or_create_resident
from casestore.clock import FakeClock
from casestore.db import session_scope
from casestore.deadlines import SlaPolicy
from casestore.intake import IntakeResult, Report, open_case
from casestore.models import Case, Notification, Resident
from casestore.residents import bind_address
from policies.models import Policies
from tests.conftest import SHANGHAI
from tests.factories import CHANNEL, worker_of

# telegram ids of the sample street (policies/grids.yaml)
FU01_FULL, FU01_DEPUTY, FU01_LEAD = 900100, 900101, 900103
FU02_FULL = 900104
FU03_FULL_ON_LEAVE, FU03_DEPUTY = 900108, 900109
FURONG_SUPERVISOR, FURONG_DUTY, FURONG_MEDIATOR, FURONG_PROPERTY = 900124, 900125, 900126, 900127
QUSHUI_SUPERVISOR, QUSHUI_DUTY = 900156, 900157
STREET_COMMAND = 900160
ADMIN = 777000


@pytest.fixture
def sla(policies: Policies) -> SlaPolicy:
    return SlaPolicy(policies.sla, SHANGHAI)


def report(**overrides: Any) -> Report:
    base: dict[str, Any] = {"intent": "help", "category": "building", "urgency": "urgent", "title": "楼道灯不亮",
                            "description": "3号楼2单元楼道灯坏了，晚上很黑", "location_text": "芙蓉小区3号楼2单元",
                            "estate": "芙蓉小区", "building": 3, "unit": 2}
    base.update(overrides)
    return Report(**base)


def resident(engine: Engine, clock: FakeClock, policies: Policies, user: int = 5001,
             estate: str | None = "芙蓉小区", building: int | None = 3) -> Resident:
    with session_scope(engine) as s:
        r = get_or_create_resident(session=s, channel=CHANNEL, external_id=user, now=clock.now(),
                                   display_name="王阿姨")
        if estate is not None and building is not None:
            bind_address(session=s, resident=r, grids=policies.grids, estate=estate, building=building,
                         now=clock.now())
        return r


def open_(engine: Engine, policies: Policies, sla: SlaPolicy, clock: FakeClock, who: Resident | None = None,
          **overrides: Any) -> IntakeResult:
    with session_scope(engine) as s:
        return open_case(session=s, policies=policies, sla=sla, clock=clock, resident=who, report=report(**overrides))


def worker_id(engine: Engine, user: int) -> int:
    with Session(engine) as s:
        return int(worker_of(s, user).id)  # type: ignore[arg-type]


def case_by_code(engine: Engine, code: str) -> Case:
    with Session(engine) as s:
        return s.execute(select(Case).where(Case.code == code)).scalars().one()


def notes(engine: Engine, code: str | None = None, kind: str | None = None) -> list[Notification]:
    with Session(engine) as s:
        stmt = select(Notification).order_by(Notification.id)
        if code is not None:
            cid = s.execute(select(Case.id).where(Case.code == code)).scalar_one()
            stmt = stmt.where(Notification.case_id == cid)
        if kind is not None:
            stmt = stmt.where(Notification.kind == kind)
        return list(s.execute(stmt).scalars())


def every_minute(clock: FakeClock, minutes: int) -> Iterator[int]:
    """Advance the fake clock one minute at a time, yielding the minute number."""
    for minute in range(1, minutes + 1):
        clock.advance(minutes=1)
        yield minute
