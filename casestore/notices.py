"""The Chinese texts and buttons of the loop's pushes, as channel-neutral `OutboundMessage`s.

Owns: wording of task pushes, cc copies, reminders, escalations, extension requests, hotspot alerts,
rating requests and the reply for a duplicate report. Times are shown in Asia/Shanghai.
Must not: decide who gets what or when (routing, sweep and actions do), or know any channel's limits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from casestore.models import Case, Hotspot, Worker
from casestore.notify import Button, OutboundMessage
from policies.models import Taxonomy
from policies.taxonomy import ROLE_NAMES_ZH

SHANGHAI = ZoneInfo("Asia/Shanghai")
POSITION_ZH = {**{r.value: n for r, n in ROLE_NAMES_ZH.items()}, "deputy": "副网格员", "volunteer_lead": "志愿者队长"}


class CaseHeadline(Protocol):
    """What reminder and escalation texts read of a case: a `Case`, or the sweep's plain `DueCase` row."""

    @property
    def code(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def response_due_at(self) -> datetime | None: ...
    @property
    def resolve_due_at(self) -> datetime | None: ...


def local(ts: datetime | None, tz: ZoneInfo = SHANGHAI) -> str:
    return ts.astimezone(tz).strftime("%m-%d %H:%M") if ts else "—"


def _summary(case: Case, taxonomy: Taxonomy) -> str:
    where = f"\n地点：{case.location_text}" if case.location_text else ""
    return (f"【{case.code}】{case.title}\n类别：{taxonomy.name_of(case.category)}　"
            f"紧急程度：{taxonomy.urgency_name(case.urgency)}{where}\n描述：{case.description}")


def task_buttons(code: str) -> list[list[Button]]:
    return [
        [Button("接单", "accept", code), Button("已联系", "respond", code), Button("办结", "resolve", code)],
        [Button("转派", "transfer", code), Button("申请延期", "extend", code)],
    ]


def task_push(case: Case, *, taxonomy: Taxonomy, reopened: bool = False, transferred: bool = False,
              tz: ZoneInfo = SHANGHAI, contact: str | None = None) -> OutboundMessage:
    """The worker's task: code, category, urgency, place, the resident's MASKED contact, description, the
    resident's photo, due times and the action buttons."""
    head = "🔁 工单被居民退回，请重新处理" if reopened else ("↪️ 转派给您的工单" if transferred else "📋 新工单")
    flag = "\n⚠️ 地址未确认，请先联系居民核实地址。" if case.needs_address_confirmation else ""
    who = f"\n联系电话：{contact}（已打码，完整号码请通过平台联系）" if contact else ""
    photo = next((a.get("file_id") for a in case.attachments or [] if a.get("type") == "photo"), None)
    text = (f"{head}\n{_summary(case, taxonomy)}{who}{flag}\n"
            f"请于 {local(case.response_due_at, tz)} 前联系居民，{local(case.resolve_due_at, tz)} 前办结。")
    return OutboundMessage(text=text, buttons=task_buttons(case.code), photo=photo)


def cc_copy(case: Case, role: str, *, taxonomy: Taxonomy) -> OutboundMessage:
    return OutboundMessage(
        text=f"📎 抄送（{POSITION_ZH.get(role, role)}）\n{_summary(case, taxonomy)}\n请配合责任网格员处理。")


def reminder(case: CaseHeadline, *, what: str, minutes_left: int, tz: ZoneInfo = SHANGHAI) -> OutboundMessage:
    """`what` is "response" or "resolve"."""
    goal = "联系居民（首次响应）" if what == "response" else "办结"
    due = case.response_due_at if what == "response" else case.resolve_due_at
    return OutboundMessage(
        text=f"⏰ 工单 {case.code}「{case.title}」还剩 {minutes_left} 分钟需{goal}（截止 {local(due, tz)}）。",
        buttons=task_buttons(case.code),
    )


def escalation(case: CaseHeadline, *, level: int, level_name: str, what: str, assignee: Worker | None,
               tz: ZoneInfo = SHANGHAI) -> OutboundMessage:
    goal = "首次响应" if what == "response" else "办结"
    due = case.response_due_at if what == "response" else case.resolve_due_at
    who = assignee.name if assignee else "（无人）"
    return OutboundMessage(
        text=(f"🚨 超时升级（第{level}级：{level_name}）\n工单 {case.code}「{case.title}」{goal}已超时"
              f"（截止 {local(due, tz)}）。责任人：{who}。请督办。"),
        buttons=[[Button("查看工单", "view", case.code), Button("转派", "transfer", case.code)]],
    )


def escalation_to_assignee(case: CaseHeadline, *, level: int, level_name: str, what: str,
                           tz: ZoneInfo = SHANGHAI) -> OutboundMessage:
    goal = "首次响应" if what == "response" else "办结"
    return OutboundMessage(
        text=(f"🚨 您的工单 {case.code}「{case.title}」{goal}已超时，已上报{level_name}（第{level}级）。"
              "请尽快处理并点击下方按钮更新进度。"),
        buttons=task_buttons(case.code),
    )


def extension_request(case: Case, *, worker: Worker, until: datetime, reason: str,
                      tz: ZoneInfo = SHANGHAI) -> OutboundMessage:
    return OutboundMessage(
        text=(f"🕒 延期申请：{worker.name} 申请将工单 {case.code}「{case.title}」的办结时限从 "
              f"{local(case.resolve_due_at, tz)} 延至 {local(until, tz)}。\n理由：{reason}"),
        buttons=[[Button("同意延期", "approve_extension", case.code), Button("不同意", "deny_extension", case.code)]],
    )


def extension_decided(case: Case, *, approved: bool, tz: ZoneInfo = SHANGHAI) -> OutboundMessage:
    if approved:
        return OutboundMessage(text=f"✅ 工单 {case.code} 延期已批准，新的办结时限：{local(case.resolve_due_at, tz)}。")
    return OutboundMessage(text=f"❌ 工单 {case.code} 延期未获批准，请按原时限 {local(case.resolve_due_at, tz)} 办结。")


def hotspot_alert(hotspot: Hotspot, *, category_name: str, scope_name: str, window_text: str) -> OutboundMessage:
    codes = "、".join(hotspot.case_codes[:20]) + ("等" if len(hotspot.case_codes) > 20 else "")
    return OutboundMessage(
        text=(f"🔥 未诉先办预警：{scope_name} {window_text}内收到 {hotspot.report_count} 件「{category_name}」"
              f"诉求，可能是同一事件，请统一处置。\n工单：{codes}"),
        buttons=[[Button("查看工单", "view", hotspot.case_codes[0] if hotspot.case_codes else None)]],
    )


def rating_request(case: Case) -> OutboundMessage:
    stars = [Button(f"⭐{n}", "rate", case.code, str(n)) for n in range(1, 6)]
    return OutboundMessage(
        text=(f"您反映的问题（工单 {case.code}「{case.title}」）已处理完毕。\n问题解决了吗？请为这次服务打分"
              "（1 分最不满意，5 分最满意）。"),
        buttons=[[Button("已解决", "rate", case.code, "fixed")], stars,
                 [Button("没解决", "rate", case.code, "not_fixed")]],
    )


def subscriber_update(own: Case, *, note: str | None = None) -> OutboundMessage:
    """To a resident whose report was merged into another's case: their OWN code and words, never the other's."""
    done = f"（{note}）" if note else ""
    return OutboundMessage(text=f"您反映的问题（工单 {own.code}「{own.title}」）已合并处理完毕{done}。"
                                "如问题仍在，请再次告诉我。")



def role_name(role: str | None) -> str:
    return POSITION_ZH.get(role or "", role or "")

