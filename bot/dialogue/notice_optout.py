"""A resident stops (or resumes) staff notices by topic: the 「不再接收此类通知」 button under each notice
(casestore.broadcasts), 退订通知 (then a topic button, or 全部), 退订停水通知 / 恢复停水通知 (one topic by name)
and 恢复通知 (every topic).

Owns: `take(turn)`, the one hook the engine calls before the resident's tables, and its few replies.
Must not: decide who gets a notice (casestore.broadcasts does) or touch anything but the resident's opt-out.
"""

from __future__ import annotations

import re

from bot.dialogue.turn import Turn
from casestore.broadcasts import ALL_TOPICS, OPT_OUT_ACTION, TOPICS, set_opt_out
from casestore.notify import Button

STOP_WORDS = frozenset({"退订通知", "退订", "不再接收通知", "不要再发通知"})
RESUME_WORDS = frozenset({"恢复通知", "恢复接收通知", "重新接收通知"})
ASK = "想退订哪类通知？点下面的按钮；办事进度的消息不受影响。"
STOPPED = "好的，以后不再给您发「{topic}」类通知，其他通知照常。想恢复，发送「恢复{topic}通知」即可。"
STOPPED_ALL = "好的，以后不再给您发社区通知。办事进度的消息照常发送。想恢复，发送「恢复通知」即可。"
ALREADY = "您已经退订了「{topic}」类通知。想恢复，发送「恢复{topic}通知」即可。"
RESUMED_TOPIC = "好的，已恢复接收「{topic}」类通知。"
NOT_STOPPED_TOPIC = "您没有退订「{topic}」类通知，会照常发给您。"
RESUMED = "好的，已恢复接收社区通知。"
NOTHING_TO_RESUME = "您没有退订过通知，社区通知会照常发给您。"
NO_RESIDENT = "您还没有登记，收不到社区通知，不用退订。"
BAD_TOPIC = "这个按钮已失效，请发送「退订通知」重新选择。"
ALL_LABEL = "全部"
# "退订停水通知", "不再接收电梯维保类的通知", "恢复疫苗接种通知": one topic by its name (电梯 and 疫苗 for short)
_NAMES = {**{name: code for code, name in TOPICS.items()}, "电梯": "elevator", "疫苗": "vaccine"}
_TOPIC = "|".join(sorted(_NAMES, key=len, reverse=True))
_STOP_TOPIC = re.compile(rf"^(?:退订|取消|不要|不再接收|不再要)(?P<t>{_TOPIC})(?:类)?(?:的)?通知$")
_RESUME_TOPIC = re.compile(rf"^(?:恢复|重新接收|恢复接收)(?P<t>{_TOPIC})(?:类)?(?:的)?通知$")


def _name(topic: str) -> str:
    return "全部" if topic == ALL_TOPICS else ("其他" if topic == "other" else TOPICS[topic])


def take(turn: Turn) -> bool:
    """Handle an opt-out button or word; False leaves the message to the resident's tables."""
    inc = turn.incoming
    if inc.kind == "button" and inc.button is not None and inc.button.action == OPT_OUT_ACTION:
        _stop(turn, inc.button.arg or "")
        return True
    if inc.kind != "text":
        return False
    words = (inc.text or "").strip().rstrip("。！!").replace(" ", "")
    if (m := _STOP_TOPIC.match(words)):
        _stop(turn, _NAMES[m["t"]])
        return True
    if (m := _RESUME_TOPIC.match(words)):
        _resume(turn, _NAMES[m["t"]])
        return True
    if words in STOP_WORDS:
        buttons = [Button(name, OPT_OUT_ACTION, None, code) for code, name in TOPICS.items()]
        turn.say(ASK, [buttons[:3], [*buttons[3:], Button(ALL_LABEL, OPT_OUT_ACTION, None, ALL_TOPICS)]])
        return True
    if words in RESUME_WORDS:
        resident = turn.resident()
        if resident is None:
            turn.say(NO_RESIDENT)
        elif set_opt_out(session=turn.session, resident=resident, topic=ALL_TOPICS, opt_out=False, now=turn.now):
            turn.say(RESUMED)
        else:
            turn.say(NOTHING_TO_RESUME)
        return True
    return False


def _stop(turn: Turn, topic: str) -> None:
    if topic != ALL_TOPICS and topic not in TOPICS:
        turn.say(BAD_TOPIC)
        return
    resident = turn.resident()
    if resident is None:
        turn.say(NO_RESIDENT)
        return
    if not set_opt_out(session=turn.session, resident=resident, topic=topic, opt_out=True, now=turn.now):
        turn.say(ALREADY.format(topic=_name(topic)))
        return
    turn.say(STOPPED_ALL if topic == ALL_TOPICS else STOPPED.format(topic=_name(topic)))


def _resume(turn: Turn, topic: str) -> None:
    resident = turn.resident()
    if resident is None:
        turn.say(NO_RESIDENT)
    elif set_opt_out(session=turn.session, resident=resident, topic=topic, opt_out=False, now=turn.now):
        turn.say(RESUMED_TOPIC.format(topic=_name(topic)))
    else:
        turn.say(NOT_STOPPED_TOPIC.format(topic=_name(topic)))
