"""The Chinese texts and buttons of the loop's pushes, as channel-neutral `OutboundMessage`s.

Owns: wording of task pushes, cc copies, reminders, escalations, extension requests, hotspot alerts,
rating requests, the reply for a duplicate report, the resident's progress pushes (`PROGRESS`, one table) and
the relayed messages between a worker and a resident (casestore.relay). Times are shown in Asia/Shanghai.
Must not: decide who gets what or when (routing, sweep and actions do), or know any channel's limits; put a
phone number into a message for the other side (relayed words arrive masked).
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
    """Code, words, category, urgency and place. The title is the description's first sentence (bot.dialogue.
    filing.title_of), so the description is shown in its place, once; a title of its own leads it."""
    where = f"\n地点：{case.location_text}" if case.location_text else ""
    title = case.title.removesuffix("…")
    head = case.description if case.description.startswith(title) else f"{case.title}\n描述：{case.description}"
    return (f"【{case.code}】{head}\n类别：{taxonomy.name_of(case.category)}　"
            f"紧急程度：{taxonomy.urgency_name(case.urgency)}{where}")


def task_buttons(code: str, *, resident: bool = False) -> list[list[Button]]:
    """The action buttons; with `resident`, the ways to reach them through the bot (no numbers shared)."""
    rows = [
        [Button("接单", "accept", code), Button("已联系", "respond", code), Button("办结", "resolve", code)],
        [Button("转派", "transfer", code), Button("申请延期", "extend", code)],
    ]
    if resident:
        rows.append([Button("回复居民", "relay", code), Button("请居民留电话", "ask_phone", code)])
    return rows


def task_push(case: Case, *, taxonomy: Taxonomy, reopened: bool = False, transferred: bool = False,
              tz: ZoneInfo = SHANGHAI, contact: str | None = None, reason: str | None = None) -> OutboundMessage:
    """The worker's task: code, description (once), category, urgency, place, the resident's MASKED contact, a
    transfer's reason, the resident's photo, due times and the action buttons."""
    head = "🔁 工单被居民退回，请重新处理" if reopened else ("↪️ 转派给您的工单" if transferred else "📋 新工单")
    flag = "\n⚠️ 地址未确认，请先联系居民核实地址。" if case.needs_address_confirmation else ""
    who = f"\n联系电话：{contact}（已打码，完整号码请通过平台联系）" if contact else ""
    why = f"\n转派原因：{reason}" if transferred and reason else ""
    photo = next((a.get("file_id") for a in case.attachments or [] if a.get("type") == "photo"), None)
    voice = next((a.get("file_id") for a in case.attachments or [] if a.get("type") == "voice"), None)
    text = (f"{head}\n{_summary(case, taxonomy)}{who}{why}{flag}\n"
            f"请于 {local(case.response_due_at, tz)} 前联系居民，{local(case.resolve_due_at, tz)} 前办结。")
    return OutboundMessage(text=text, buttons=task_buttons(case.code, resident=case.resident_id is not None),
                           photo=photo, voice=voice)


def moved_away(case: Case, *, grid: str | None, handler: str) -> OutboundMessage:
    """To those paged for a case's old place: it moved (the resident gave the place), where, and who has it."""
    who = f"{grid or ''}{handler}"
    return OutboundMessage(
        text=(f"↪️ 工单已按新地点改派：【{case.code}】{case.title}\n居民补充了地点：{case.location_text or '—'}，"
              f"已转给{who}负责。请不要再按原地点出动；如已在处置，请与{who}交接。"))


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


def rating_request(case: Case, *, note: str | None = None, photo: str | None = None) -> OutboundMessage:
    """The resolution push: what was done (the worker's note and photo) and the rating buttons."""
    stars = [Button(f"⭐{n}", "rate", case.code, str(n)) for n in range(1, 6)]
    done = f"\n处理结果：{note}" if note else ""
    return OutboundMessage(
        text=(f"您反映的问题（工单 {case.code}「{case.title}」）已处理完毕。{done}\n问题解决了吗？请为这次服务打分"
              "（1 分最不满意，5 分最满意）。"),
        buttons=[[Button("已解决", "rate", case.code, "fixed")], stars,
                 [Button("没解决", "rate", case.code, "not_fixed")]],
        photo=photo,
    )


def subscriber_update(own: Case, *, note: str | None = None) -> OutboundMessage:
    """To a resident whose report was merged into another's case: their OWN code and words, never the other's."""
    done = f"（{note}）" if note else ""
    return OutboundMessage(text=f"您反映的问题（工单 {own.code}「{own.title}」）已合并处理完毕{done}。"
                                "如问题仍在，请再次告诉我。")



def role_name(role: str | None) -> str:
    return POSITION_ZH.get(role or "", role or "")


# ---------------------------------------------------------------- to the resident: progress, one table
PROGRESS: dict[str, str] = {
    "accepted": "您反映的问题（工单 {code}「{title}」）{handler}已接单，会尽快联系您。",
    "contacted": "工单 {code}「{title}」：{handler}已联系您，正在办理。",
    "extended": "工单 {code}「{title}」需要多一些时间，办结时间延期至 {until}。原因：{reason}",
    "transferred": "工单 {code}「{title}」已转交{handler}办理，会尽快联系您。",
    "closed": "工单 {code}「{title}」已由工作人员办结。办结说明：{reason}",
    "merged": "工单 {code}「{title}」与同一问题的工单 {original} 合并办理，后续进展会继续通知您。",
}


def progress(case: Case, step: str, *, handler: str, until: datetime | None = None, reason: str | None = None,
             original: str | None = None, tz: ZoneInfo = SHANGHAI) -> OutboundMessage:
    """A step of the resident's case (`PROGRESS` key); `handler` is a position, never a person's name. The
    resolution itself is `rating_request`."""
    at = until.astimezone(tz) if until else None
    when = f"{at.month}月{at.day}日 {at:%H:%M}" if at else ""
    return OutboundMessage(text=PROGRESS[step].format(code=case.code, title=case.title, handler=handler,
                                                      until=when, reason=reason or "—", original=original or "—"))


# ---------------------------------------------------------------- relayed messages (casestore.relay)
def relay_to_resident(case: Case, *, sender: str, words: str) -> OutboundMessage:
    """The worker's words (masked) from the bot, with the button to answer."""
    return OutboundMessage(text=f"{sender}：{words}\n（关于工单 {case.code}，点「回复网格员」或直接回复文字即可）",
                           buttons=[[Button("回复网格员", "relay_reply", case.code)]])


def relay_to_worker(case: Case, *, words: str) -> OutboundMessage:
    """The resident's words (masked) to the worker who handles the case."""
    return OutboundMessage(text=f"💬 居民回复（工单 {case.code}「{case.title}」）：{words}",
                           buttons=[[Button("回复居民", "relay", case.code)]])


def phone_request(case: Case, *, sender: str, reason: str) -> OutboundMessage:
    """Asks the resident for a call-back phone, on the worker's request, with the reason."""
    return OutboundMessage(
        text=(f"{sender}想请您留一个回电号码（工单 {case.code}「{case.title}」）。\n原因：{reason}\n"
              "方便的话请直接回复手机号码。号码只有负责办理的网格员能看到，不会给其他人；不方便可以不留，"
              "也可以点「回复网格员」留言。"),
        buttons=[[Button("回复网格员", "relay_reply", case.code)]])


def phone_given(case: Case) -> OutboundMessage:
    """To the assignee: the number is there, behind a button (it is never written into a message row)."""
    return OutboundMessage(text=f"📞 居民已留下回电号码（工单 {case.code}「{case.title}」），点「查看电话」查看。",
                           buttons=[[Button("查看电话", "show_phone", case.code),
                                     Button("回复居民", "relay", case.code)]])
