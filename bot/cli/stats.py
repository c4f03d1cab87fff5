"""`quanbot stats`: the closed loop's figures (response times, on-time rates, satisfaction) as tables or JSON.

Every figure comes from casestore.stats (the one definition the demo summary and the console use too); this only
renders them, with the Chinese label of each and the basis it is counted on.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time
from typing import Any

import typer
from rich.table import Table

from bot.cli.common import config_errors, console, fail, settings_or_exit

app = typer.Typer()

# the overview's rows in the table, in order (labels come from casestore.stats.LABELS)
OVERVIEW_ROWS = ("cases", "median_response_min", "p90_response_min", "on_time_response", "on_time_resolution",
                 "overdue_now", "escalations", "satisfaction", "ratings", "rating_response_rate", "reopen_rate",
                 "answered_questions", "refusals")
_RATES = {"on_time_response", "on_time_resolution", "rating_response_rate", "reopen_rate"}


def _parse_at(value: str, tz: Any) -> datetime:
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        fail(f"时间格式不对：{value!r}，请用“YYYY-MM-DD HH:MM”（上海时间），例如 2026-11-20 18:00。", code=2)
    return (at if at.tzinfo is not None else at.replace(tzinfo=tz)).astimezone(UTC)


@app.command("stats")
def stats_cmd(
    since: str = typer.Option("", "--since", help="起始日期 YYYY-MM-DD（上海时间），默认全部。"),
    grid: str = typer.Option("", "--grid", help="只看某个网格，例如 FU01。"),
    at: str = typer.Option("", "--at", help="把“现在”定为这一时刻（“YYYY-MM-DD HH:MM”，上海时间），用于时钟快进过的"
                                            "演示库；工单状态仍是库中现有的。默认现在。"),
    as_json: bool = typer.Option(False, "--json", help="输出 JSON。"),
) -> None:
    """闭环指标：响应时长、按时响应/办结率、超时、退回率、满意度、重复与热点；今日与本周总览。"""
    from sqlmodel import Session

    from casestore.db import make_engine, require_current_schema
    from casestore.stats import compute, overview
    from policies.loader import load_policies

    settings = settings_or_exit()
    start = None
    if since:
        try:
            start = datetime.combine(date.fromisoformat(since), time(0, 0), tzinfo=settings.tz).astimezone(UTC)
        except ValueError:
            fail(f"日期格式不对：{since!r}，请用 YYYY-MM-DD，例如 2026-11-01。", code=2)
    now = _parse_at(at, settings.tz) if at else datetime.now(UTC)
    policies = load_policies(settings.policies_dir)
    names = {k.value: v.name for k, v in policies.taxonomy.categories.items()}
    scope = {grid} if grid else None
    with config_errors():
        engine = make_engine(settings.database_url)
        try:
            require_current_schema(engine)
            with Session(engine) as session:
                figures = compute(session=session, now=now, since=start, grid_id=grid or None,
                                  category_names=names)
                summary = overview(session=session, now=now, tz=settings.tz, scope=scope)
        finally:
            engine.dispose()
    if as_json:
        out: dict[str, Any] = {k: [f.to_dict() for f in v] for k, v in figures.items()}
        out["overview"] = summary.to_dict()
        console.print_json(json.dumps(out, ensure_ascii=False))
        return
    if not figures["total"] and not summary.all.cases:
        console.print("暂无工单数据。")
        return
    board = Table(title=f"总览（截至 {now.astimezone(settings.tz):%Y-%m-%d %H:%M}，上海时间"
                        f"{'，网格 ' + grid if grid else ''}）")
    board.add_column("指标")
    windows = (summary.today, summary.week, summary.all)
    for w in windows:
        board.add_column(w.label, justify="right")
    for key in OVERVIEW_ROWS:
        board.add_row(summary.labels.get(key, key), *[_cell(key, w.to_dict()[key]) for w in windows])
    console.print(board)
    if summary.wishes is not None and summary.wishes.collected:
        wall = Table(title="微心愿（全部时间）")
        wall.add_column("指标")
        wall.add_column("数值", justify="right")
        for key, value in summary.wishes.to_dict().items():
            wall.add_row(summary.labels.get(key, key), _cell(key, value))
        console.print(wall)
    titles = {"total": "全街道", "grid": "按网格", "community": "按社区", "category": "按类别"}
    scope_note = f"（自 {since} 起新建的工单）" if since else "（全部时间）"
    for kind, title in titles.items():
        table = Table(title=title + scope_note)
        table.add_column("编号", no_wrap=True)
        for header in ("名称", "工单", "响应中位(分)", "响应P90(分)", "按时响应", "按时办结", "在办", "超时",
                       "退回率", "满意度", "评价率", "升级", "重复", "热点"):
            table.add_column(header, justify="left" if header == "名称" else "right")
        for f in figures[kind]:
            table.add_row(f.key, f.name, str(f.cases), _n(f.median_response_min), _n(f.p90_response_min),
                          _p(f.on_time_response), _p(f.on_time_resolution), str(f.open), str(f.overdue),
                          _p(f.reopen_rate), _n(f.satisfaction, "{:.2f}"), _p(f.rating_response_rate),
                          str(f.escalations), str(f.duplicates), str(f.hotspots))
        console.print(table)
    console.print("说明：工单类指标按所选时段内新建的工单计，升级、评价、问答按所选时段内发生的计；“当前超时”是此刻全部在办"
                  "工单中已超时的件数。响应用时为自然时间，从当前办理周期开始（报告、退回重办或转派）算起。满意度是每次"
                  "评价的平均分（含引起退回的低分）；超时未评价自动办结的工单计入“未评价”，不算满意。")


def _cell(key: str, value: object) -> str:
    if value is None:
        return "—"
    if key in _RATES and isinstance(value, float):
        return _p(value)
    if key == "satisfaction" and isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _p(x: float | None) -> str:
    return "—" if x is None else f"{x * 100:.1f}%"


def _n(x: float | None, fmt: str = "{:.1f}") -> str:
    return "—" if x is None else fmt.format(x)
