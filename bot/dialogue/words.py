"""The short replies residents and workers type instead of pressing a button, as sets and recognisers.

Owns: what counts as yes, no, agree, skip, thanks and "I want a person". Must not: decide what happens next.
"""

from __future__ import annotations

import re

YES = frozenset({"对", "是", "是的", "对的", "确认", "好", "好的", "嗯", "没错", "可以", "行"})
NO = frozenset({"不对", "不是", "错了", "修改", "不对(修改)", "改一下"})
AGREE = frozenset({"同意", "我同意", "好", "好的", "可以", "行", "同意的"})
DISAGREE = frozenset({"不同意", "我不同意", "拒绝", "不"})
SKIP = frozenset({"跳过", "没有", "没有照片", "不用", "不需要", "算了", "没", "不知道", "暂不设置"})
# "I want a person", the one table: typed alone, or with a phone number and a few words around it
# ("人工，138… 这是俺的电话", "俺要找真人说话", "叫你们的人来"). The button labels are among them.
HUMAN = frozenset({"转人工", "人工", "找人工", "人工客服", "人工服务", "找网格员", "找人", "找个人", "找真人", "真人",
                   "找工作人员", "叫你们的人", "找你们的人", "找社区的人", "找社区工作人员", "要人工", "找客服"})
_HUMAN_ASK = re.compile(
    r"^(?:我|俺|咱)?(?:们)?(?:要|想|想要|需要|得|就要)?(?:找|叫|转|要|请|换|让)"
    r"(?:个|一个|位|一位)?(?:真人|人工|人工客服|客服|网格员|工作人员|你们的人|你们工作人员|社区的人|活人|人)"
    r"(?:来|过来)?(?:说话|说|聊聊|聊|谈谈|谈|处理|服务|一下|接待)?(?:吧|啊|呀|了|呗)?$")
# words that may come with the request without making it something else
_HUMAN_FILLER = re.compile(r"^(?:这是|这个是|我|俺|咱)*(?:的)?(?:电话|手机|手机号|电话号码|号码|联系电话|联系方式)?"
                           r"(?:是|号)?$|^(?:谢谢|麻烦了|麻烦你了?|快点|快|求你了|好吗|行吗|可以吗|吧|啊|呀|请|你好|您好)$")
_PHONE_DIGITS = re.compile(r"[\d*＊\-－ ]{7,}")
THANKS = re.compile(r"^(谢谢|感谢|多谢|辛苦了|太好了|好的谢谢)")
MIN_ACTIONABLE = 4  # fewer characters than this ("坏了") cannot be acted on


def content_chars(text: str) -> int:
    """How many letters and digits a message has, without spaces and punctuation."""
    return len(re.sub(r"[\W_]+", "", text))


def is_skip(text: str) -> bool:
    return text.strip() in SKIP


def wants_person(text: str) -> bool:
    """The resident asks for a person: a phrase of HUMAN (or its pattern), alone or with a phone number."""
    clauses = [c for c in re.split(r"[\s，,。.！!？?、；;：:~～]+", _PHONE_DIGITS.sub(" ", text.strip())) if c]
    asks = [c for c in clauses if c in HUMAN or _HUMAN_ASK.match(c)]
    return bool(asks) and all(c in asks or _HUMAN_FILLER.match(c) for c in clauses)
