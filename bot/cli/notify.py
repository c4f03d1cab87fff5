"""`quanbot notify`: a staff notice (停水、停电、电梯维保、疫苗接种、其他) to the residents of some buildings, an
estate, a grid or a community, through casestore.broadcasts (the console's 「发通知」 uses the same function).

The command queues the deliveries (one per consenting resident who has not opted out of the topic); the running
bot's dispatcher sends them at each channel's rate limit. Run again with the same target, topic and text on the
same day (or the same --key), it queues nothing twice: a run cut off half-way is simply run again.
Must not: send anything itself or choose the recipients (casestore does).
"""

from __future__ import annotations

import typer

from bot.cli.common import config_errors, console, fail, settings_or_exit

app = typer.Typer()


@app.command("notify")
def notify_cmd(
    building: list[str] = typer.Option([], "--building", help="楼栋，写成 小区名:楼号，例如 芙蓉小区:3；可写多次。"),
    estate: str = typer.Option("", "--estate", help="整个小区，例如 芙蓉小区。"),
    grid: str = typer.Option("", "--grid", help="整个网格，例如 FU01。"),
    community: str = typer.Option("", "--community", help="整个社区，例如 furong。"),
    topic: str = typer.Option(..., "--topic", help="通知类型：停水、停电、电梯维保、疫苗接种、其他。"),
    text: str = typer.Option(..., "--text", help="通知内容（中文，最多 500 字）。"),
    key: str = typer.Option("", "--key", help="去重键：同一个键只发一次。默认由对象、类型、内容和当天日期得出。"),
) -> None:
    """给楼栋、小区、网格或社区的居民发通知（未诉先办）；已退订该类通知的居民不发，每人只发一次。"""
    from datetime import UTC, datetime

    from casestore.broadcasts import (
        building_target,
        community_target,
        content_key,
        estate_target,
        grid_target,
        parse_building,
        send_notice,
    )
    from casestore.db import make_engine, require_current_schema, session_scope
    from casestore.errors import DomainError
    from policies.loader import load_policies

    chosen = sum(1 for given in (building, estate, grid, community) if given)
    if chosen != 1:
        fail("请只指定一种对象：--building（可多次）、--estate、--grid 或 --community。", code=2)
    settings = settings_or_exit()
    grids = load_policies(settings.policies_dir).grids
    now = datetime.now(UTC)
    try:
        if building:
            target = building_target(grids, [parse_building(b) for b in building])
        elif estate:
            target = estate_target(grids, estate)
        elif grid:
            target = grid_target(grids, grid)
        else:
            target = community_target(grids, community)
        day = now.astimezone(settings.tz).strftime("%Y%m%d")
        key = key or content_key(prefix="cli", target=target, topic=topic, text=text, day=day)
        with config_errors():
            engine = make_engine(settings.database_url)
            try:
                require_current_schema(engine)
                with session_scope(engine) as session:
                    result = send_notice(session=session, key=key, topic=topic, text=text, target=target,
                                         actor="admin:cli", now=now)
                    notice_id, queued, added, skipped = (result.notice.id, result.queued, result.added,
                                                         result.opted_out)
                    created = result.created
            finally:
                engine.dispose()
    except DomainError as exc:
        fail(exc.user_message, code=2)
    if created:
        console.print(f"通知 #{notice_id} 已排队：{target.label}，{queued} 位居民（{skipped} 位已退订此类通知，未发）。"
                      "运行中的机器人会按各渠道限速发出。", soft_wrap=True)
    elif added:
        console.print(f"通知 #{notice_id} 已存在，补排了 {added} 位居民（共 {queued} 位），其余不重复发送。",
                      soft_wrap=True)
    else:
        console.print(f"通知 #{notice_id} 已经发过（{queued} 位居民），没有重复发送。", soft_wrap=True)
