"""The demo's summary shows the load per person (#17 item 5): the figures of casestore.stats.worker_load in the
console summary and the HTML report, so a day where the part-timers shared the full-time worker's cases shows it."""

from __future__ import annotations

import io
from datetime import datetime, time

from rich.console import Console

from bot.demo.summary import compute_figures, load_rows, print_summary, render_html
from tests.conftest import SHANGHAI
from tests.test_loop_support import open_, sla
from tests.test_team_routing import PROBLEMS, with_team

__all__ = ["sla"]


def test_summary_lists_each_persons_load_with_the_part_timers_share(engine, policies, sla, clock):
    team = with_team(policies, overflow_after=1)
    for p in PROBLEMS[:4]:
        open_(engine, team, sla, clock, **p)
    fig, lines = compute_figures(engine=engine, policies=policies, sla=sla, seed=1, messages=4, residents=1,
                                 now=clock.now())
    rows = {r[0]: r for r in load_rows(fig)}
    assert rows["芙蓉社区第一网格专职网格员"][1:4] == ("专职网格员", "FU01", "2")
    assert rows["芙蓉社区第一网格兼职网格员（副）"][3] == "1" and rows["芙蓉社区第一网格兼职网格员"][3] == "1"
    assert sum(int(r[3]) for r in rows.values()) == 4  # every open case is on someone
    out = io.StringIO()
    print_summary(Console(file=out, width=160), fig, policies)
    text = out.getvalue()
    assert "各人负荷" in text and "芙蓉社区第一网格兼职网格员（副）" in text
    page = render_html(fig, lines, policies, title="t", start=clock.now(), day_end=clock.now(), now=clock.now(),
                       tz=SHANGHAI, run_info={})
    assert "<h2>各人负荷</h2>" in page and "<td>芙蓉社区第一网格专职网格员</td>" in page


def test_no_cases_no_load_table(engine, policies, sla, clock):
    fig, _ = compute_figures(engine=engine, policies=policies, sla=sla, seed=1, messages=0, residents=0,
                             now=datetime.combine(clock.now().date(), time(18), tzinfo=SHANGHAI))
    assert fig.load == []
    out = io.StringIO()
    print_summary(Console(file=out, width=160), fig, policies)
    assert "各人负荷" not in out.getvalue()
