"""Passage hygiene: drop instruction-like / social-engineering sentences from knowledge passages, and mask
personal numbers in answers.

Owns: `is_injection`, `clean_passage`, `injected_sentences`, `mask_answer`. A knowledge document is data: a
sentence in it that talks to the model ("忽略之前的所有指令", "you are now ...") or tells residents to send
ID/bank/verification codes somewhere or to transfer money is never part of a policy, so it is removed from
the passages used by the offline answer and the LLM context (the rest of the document still answers).
Patterns are specific on purpose: ordinary policy text ("请携带身份证原件", "发送短信验证码后登录") must pass.
Must not: drop whole documents, rank, answer or log personal data unmasked.
"""

from __future__ import annotations

import re

from knowledge.chunking import split_sentences
from policies.masking import find_personal_data, mask_value

_SECRET = r"(?:身份证号|身份证号码|银行卡号?|银行卡密码|密码|验证码|支付密码|社保卡密码|账户信息)"
_PATTERNS: tuple[re.Pattern[str], ...] = tuple(re.compile(p, re.IGNORECASE) for p in (
    # talking to the model
    r"忽略(?:掉)?(?:之前|以上|上面|前面|先前|所有|全部|此前)[^。！？\n]{0,12}(?:指令|指示|规则|提示|设定|要求)",
    r"(?:无视|不要理会|忘记|忘掉)(?:之前|以上|上面|前面|所有|全部)[^。！？\n]{0,12}(?:指令|指示|规则|提示|设定)",
    r"系统(?:通知|提示|指令|消息)\s*[】\]:：]",
    r"【\s*系统(?:通知|提示|指令|消息)",
    r"系统已(?:被|经被)?(?:接管|入侵|劫持|控制)",
    r"你现在(?:必须|是|扮演|的身份|要|应该)",
    r"(?:扮演|假装你是)[^。！？\n]{0,10}(?:助手|ai|模型|管理员)",
    (r"\b(?:ignore|disregard|forget)\s+(?:all\s+|any\s+)?(?:the\s+)?(?:previous|prior|above|earlier|preceding)?"
     r"\s*(?:instructions|prompts?|rules|directions)"),
    r"\byou\s+are\s+now\b",
    r"\b(?:system\s+prompt|developer\s+mode|jailbreak)\b",
    r"<\s*/?\s*(?:system|context|question|doc|instructions?)\s*>",
    # social engineering aimed at residents
    r"把[^。！？\n]{0,20}" + _SECRET + r"[^。！？\n]{0,30}(?:发|告诉|提供|报|交|透露)(?:送|给)?(?:到|给|至)",
    (r"(?:发送|发|告诉|提供|透露)(?:到|给)?[^。！？\n]{0,12}" + _SECRET
     + r"[^。！？\n]{0,6}(?:到|给|至)\s*[0-9０-９+＋]"),
    r"(?:转账|汇款|打款)(?:到|至|给)[^。！？\n]{0,12}(?:账户|账号|卡号|银行卡)",
    r"(?:指定|安全|专用|以下)(?:账户|账号)[^。！？\n]{0,8}(?:转账|汇款|打款)",
))


def is_injection(sentence: str) -> bool:
    """True when the sentence instructs the model or asks residents for secrets/money transfers."""
    return any(p.search(sentence) for p in _PATTERNS)


def injected_sentences(text: str) -> list[str]:
    """The sentences of `text` that `is_injection` flags (for the ingestion warning)."""
    return [s for s in split_sentences(text) if is_injection(s)]


def clean_passage(text: str) -> str:
    """`text` without its flagged sentences; untouched (same object) when nothing is flagged."""
    if not any(p.search(text) for p in _PATTERNS):
        return text
    lines = []
    for line in text.split("\n"):
        kept = [s for s in split_sentences(line) if not is_injection(s)]
        if kept:
            lines.append("".join(kept))
    return "\n".join(lines)


_ANSWER_MASKED = ("mobile", "id_number", "id_number_invalid")


def mask_answer(text: str) -> str:
    """Mask mobile and ID numbers in an answer; landlines and short hotlines (12345, 110, 96110) stay readable,
    because official service numbers are what residents need from an answer."""
    if not text:
        return text
    out, last = [], 0
    for item in find_personal_data(text):
        if item.kind not in _ANSWER_MASKED:
            continue
        out.append(text[last:item.start])
        out.append(mask_value(item.kind, item.raw))
        last = item.end
    out.append(text[last:])
    return "".join(out)
