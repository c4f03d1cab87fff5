"""`quanbot stats`: the closed loop's figures (response times, on-time rates, satisfaction) as tables or JSON."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time

import typer
from rich.table import Table

from bot.cli.common import config_errors, console, fail, settings_or_exit

app = typer.Typer()


@app.command("stats")
def stats_cmd(
    since: str = typer.Option("", "--since", help="起始日期 YYYY-MM-DD（上海时间），默认全部。"),
    grid: str = typer.Option("", "--grid", help="只看某个网格，例如 FU01。"),
    as_json: bool = typer.Option(False, "--json", help="输出 JSON。"),
) -> None:
    """闭环指标：响应时长、按时响应/办结率、超时、退回率、满意度、重复与热点。"""
    from sqlmodel import Session

    from casestore.db import make_engine, require_current_schema
    from casestore.stats import compute
    from policies.loader import load_policies

    settings = settings_or_exit()
    start = None
    if since:
        try:
            start = datetime.combine(date.fromisoformat(since), time(0, 0), tzinfo=settings.tz).astimezone(UTC)
        except ValueError:
            fail(f"日期格式不对：{since!r}，请用 YYYY-MM-DD，例如 2026-11-01。", code=2)
    policies = load_policies(settings.policies_dir)
    names = {k.value: v.name for k, v in policies.taxonomy.categories.items()}
    with config_errors():
        engine = make_engine(settings.database_url)
        try:
            require_current_schema(engine)
            with Session(engine) as session:
                figures = compute(session=session, now=datetime.now(UTC), since=start, grid_id=grid or None,
                                  category_names=names)
        finally:
            engine.dispose()
    if as_json:
        console.print_json(json.dumps({k: [f.to_dict() for f in v] for k, v in figures.items()}, ensure_ascii=False))
        return
    if not figures["total"]:
        console.print("暂无工单数据。")
        return
    titles = {"total": "全街道", "grid": "按网格", "community": "按社区", "category": "按类别"}
    for kind, title in titles.items():
        table = Table(title=title)
        table.add_column("编号", no_wrap=True)
        for header in ("名称", "工单", "响应中位(分)", "响应P90(分)", "按时响应", "按时办结", "在办", "超时",
                       "退回率", "满意度", "评价率", "重复", "热点"):
            table.add_column(header, justify="left" if header == "名称" else "right")
        for f in figures[kind]:
            table.add_row(f.key, f.name, str(f.cases), _n(f.median_response_min), _n(f.p90_response_min),
                          _p(f.on_time_response), _p(f.on_time_resolution), str(f.open), str(f.overdue),
                          _p(f.reopen_rate), _n(f.satisfaction, "{:.1f}"), _p(f.rating_response_rate),
                          str(f.duplicates), str(f.hotspots))
        console.print(table)
    console.print("说明：超时未评价自动办结的工单计入“未评价”，不算满意。")


def _p(x: float | None) -> str:
    return "—" if x is None else f"{x * 100:.0f}%"


def _n(x: float | None, fmt: str = "{:.0f}") -> str:
    return "—" if x is None else fmt.format(x)
