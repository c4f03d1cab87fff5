"""One claim wins on PostgreSQL: every volunteer and party member of the wall presses 认领心愿 at the same instant,
each in its own thread and its own transaction, through the real dialogue engine. Exactly one is told 认领成功,
the others 已被认领; one claimer, one claim audit, one first response on the case. Skipped without
TEST_DATABASE_URL (CI sets it)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.engine import Engine
from sqlmodel import col, select

from bot.services import Services
from bot.settings import Settings
from casestore import wishes
from casestore.audit import list_audit
from casestore.clock import FakeClock
from casestore.db import session_scope
from casestore.deadlines import SlaPolicy
from casestore.intake import Report, open_case
from casestore.models import CaseEvent, WishStatus
from casestore.notify import Button
from casestore.stats import SHANGHAI
from policies.models import Policies
from tests.factories import RESIDENT_ID, SharedAI, all_text, make_resident, press, resident_of, worker_of

WALL = (900103, 900170, 900171, 900172, 900173)  # FU01's volunteers and party member, 芙蓉社区's own


def _open_wish(engine: Engine, policies: Policies, clock: FakeClock, words: str) -> str:
    """A wish of resident 555001 through intake (the path the dialogue's 对 takes), published to the wall."""
    with session_scope(engine) as s:
        resident = resident_of(s, RESIDENT_ID)
        result = open_case(session=s, policies=policies, sla=SlaPolicy(policies.sla, SHANGHAI), clock=clock,
                           resident=resident, report=Report(intent="wish", category="elderly_disabled",
                                                            urgency="normal", title=words, description=words,
                                                            estate="芙蓉小区", building=3, unit=2))
        return result.case.code


def test_concurrent_claims_on_postgresql_leave_exactly_one_claimer(pg_engine: Engine, settings: Settings,
                                                                   policies: Policies, clock: FakeClock,
                                                                   ai: SharedAI):
    engine = pg_engine
    pg_settings = settings.model_copy(update={"database_url": engine.url.render_as_string(hide_password=False)})
    dlg = Services(pg_settings, clock=clock, engine=engine, policies=policies, classifier=ai.classifier,
                   knowledge=ai.knowledge).dialogue
    make_resident(engine, policies, clock=clock)
    for n in range(3):  # a few rounds: a race that is lost only sometimes must still never double-claim
        code = _open_wish(engine, policies, clock, f"想请志愿者帮忙给老人理个发（第{n + 1}位）")
        start = threading.Barrier(len(WALL))

        def claim(user: int, code: str = code, start: threading.Barrier = start) -> str:
            start.wait()
            return all_text(dlg.handle(press(Button("认领心愿", "wclaim", code), user=user)))

        with ThreadPoolExecutor(len(WALL)) as pool:
            answers = dict(zip(WALL, pool.map(claim, WALL), strict=True))
        winners = [u for u, a in answers.items() if a.startswith("认领成功")]
        assert len(winners) == 1, answers
        assert all(a == wishes.ALREADY_CLAIMED for u, a in answers.items() if u not in winners), answers
        with session_scope(engine) as s:
            wish, case = wishes.get_wish(session=s, code=code)
            assert wish.status == WishStatus.claimed and wish.claimed_by == worker_of(s, winners[0]).id
            assert len(list_audit(session=s, subject=f"wish:{wish.id}", action="wish_claim")) == 1
            responds = s.exec(select(CaseEvent).where(col(CaseEvent.case_id) == case.id,
                                                      col(CaseEvent.action) == "respond")).all()
            assert len(responds) == 1 and responds[0].actor == f"worker:{wish.claimed_by}"
