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
HUMAN = frozenset({"转人工", "人工", "找人工", "人工客服", "找网格员"})
THANKS = re.compile(r"^(谢谢|感谢|多谢|辛苦了|太好了|好的谢谢)")
MIN_ACTIONABLE = 4  # fewer characters than this ("坏了") cannot be acted on


def content_chars(text: str) -> int:
    """How many letters and digits a message has, without spaces and punctuation."""
    return len(re.sub(r"[\W_]+", "", text))


def is_skip(text: str) -> bool:
    return text.strip() in SKIP


def wants_person(text: str) -> bool:
    return text.strip() in HUMAN
