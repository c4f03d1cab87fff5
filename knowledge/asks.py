"""What kind of fact a question asks for (a fee, a phone number, a time, a place) and whether a text gives one.

Residents ask "多少钱", "电话多少", "多久", "在哪办". The extractive answer prefers sentences that carry the kind
of fact asked for, and when the answer still carries none, it says so instead of letting a related passage pass
for the answer (the resident can ask for a person).
Owns: `ASKS`, `asked_kinds`, `gives`, `missing_kinds`. Must not: retrieve or decide whether to answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Ask:
    name: str  # as said to the resident: 没有找到具体的{name}
    question: re.Pattern[str]
    answer: re.Pattern[str]


ASKS = (
    Ask("费用", re.compile(r"多少钱|几块钱|费用|收费|价格|多少元|交多少|报多少|给多少|补多少|贴多少|花多少|"
                         r"报销比例|百分之多少"),
        re.compile(r"\d+(\.\d+)?\s*(元|块|%|％|万)|百分之|免费|不收费|不要钱|全额")),
    Ask("电话", re.compile(r"电话|号码多少|热线|联系方式|手机号"),
        re.compile(r"\d{5,}|\d{3,4}-\d{5,}|12345|110|119|120")),
    Ask("时间", re.compile(r"几天|多久|多长时间|几点|什么时候|啥时候|几月|哪天|几号|期限"),
        re.compile(r"\d+\s*(天|日|小时|个月|月|年|点|分钟|周|个工作日)|[一二三四五六七八九十两半]+(天|个月|小时|年|周)|"
                   r"\d{1,2}[:：]\d{2}|每年|每月|每周|当天|即时|立即|随时")),
    Ask("地点", re.compile(r"在哪|哪里|哪儿|地址|什么地方|去哪|啥地方"),
        re.compile(r"中心|大厅|窗口|服务站|社区|街道|办事处|派出所|医院|网点|营业厅|网上|小程序|app|官网|线上|居委会|物业|"
                   r"经办|政务服务|便民服务|机构")),
)


def asked_kinds(question: str) -> list[Ask]:
    return [a for a in ASKS if a.question.search(question)]


def gives(kinds: list[Ask], text: str) -> bool:
    """Whether `text` carries a fact of any of `kinds`."""
    return any(a.answer.search(text.lower()) for a in kinds)


def missing_kinds(question: str, text: str) -> list[str]:
    """The kinds the question asks for that `text` does not give, by name."""
    return [a.name for a in asked_kinds(question) if not a.answer.search(text.lower())]
