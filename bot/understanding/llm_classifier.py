"""Classification through an LLM with structured output (a JSON schema built from the taxonomy file).

Only masked text may be passed in. Any failure — transport error, timeout, malformed JSON, a label outside the
taxonomy — raises LLMClassifyError so the caller falls back to the offline model. Must not: apply the rule
layer or consistency rules (service.py does, for every mode).
"""

from __future__ import annotations

import json
import re
from typing import Any

from knowledge.llm import LLM, LLMError
from policies.models import Taxonomy


class LLMClassifyError(RuntimeError):
    """The LLM gave no usable classification."""


def label_schema(taxonomy: Taxonomy) -> dict[str, Any]:
    """Strict JSON schema: one enum of taxonomy ids per axis."""
    def enum(table: dict[Any, Any]) -> dict[str, Any]:
        return {"type": "string", "enum": [k.value for k in table]}

    return {
        "type": "object",
        "properties": {"intent": enum(taxonomy.intents), "category": enum(taxonomy.categories),
                       "urgency": enum(taxonomy.urgencies)},
        "required": ["intent", "category", "urgency"],
        "additionalProperties": False,
    }


def system_prompt(taxonomy: Taxonomy) -> str:
    def block(title: str, table: dict[Any, Any]) -> str:
        return title + "\n" + "\n".join(f"- {k.value}（{v.name}）：{v.definition}" for k, v in table.items())

    topicless = "、".join(i.value for i in taxonomy.topicless_intents)
    no_topic = f"- {topicless} 的类别一律为 other，紧急程度一律为 normal。\n" if topicless else ""
    return "\n\n".join([
        "你是社区网格化治理平台的消息分类器。对居民发来的一条消息，在三个维度上各选一个标签 id，只输出 JSON。",
        block("意图 intent：", taxonomy.intents),
        block("类别 category：", taxonomy.categories),
        block("紧急程度 urgency：", taxonomy.urgencies),
        ("规则：\n"
         f"{no_topic}"
         "- inquiry（询问政策、流程）紧急程度为 normal，类别取所问主题。\n"
         "- 正在发生的危险（起火、冒烟、燃气味、被困电梯、有人晕倒、走失、暴力、屋内进水、电线落地、"
         "自伤念头）为 emergency，意图一般为 help。\n"
         "- 谈论过去的危险或询问安全规定（如“电动车能在楼道充电吗”）不是紧急情况。\n"
         "- 一条消息有两个问题时，按更紧急的那个标注；同样紧急按第一个。\n"
         "- 消息中的 *** 是已脱敏的个人信息，忽略即可。"),
    ])


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")


def parse_labels(content: str, taxonomy: Taxonomy) -> dict[str, str]:
    """The three labels from the model's answer, validated against the taxonomy."""
    try:
        obj = json.loads(_FENCE.sub("", content.strip()))
    except json.JSONDecodeError as exc:
        raise LLMClassifyError(f"not JSON: {exc.msg}") from None
    if not isinstance(obj, dict):
        raise LLMClassifyError("not a JSON object")
    allowed = {"intent": {k.value for k in taxonomy.intents}, "category": {k.value for k in taxonomy.categories},
               "urgency": {k.value for k in taxonomy.urgencies}}
    out: dict[str, str] = {}
    for axis, ids in allowed.items():
        value = obj.get(axis)
        if not isinstance(value, str) or value.strip() not in ids:
            raise LLMClassifyError(f"{axis}: {str(value)[:40]!r} is not a taxonomy id")
        out[axis] = value.strip()
    return out


class LLMClassifier:
    """Asks `llm` for the three labels of an already-masked message."""

    def __init__(self, llm: LLM, taxonomy: Taxonomy):
        self.llm = llm
        self.taxonomy = taxonomy
        self.schema = label_schema(taxonomy)
        self.system = system_prompt(taxonomy)

    def classify(self, masked_text: str, *, timeout_s: float | None = None) -> dict[str, str]:
        """The three labels; `timeout_s` bounds the model call (None: the adapter's own timeout)."""
        messages = [{"role": "system", "content": self.system}, {"role": "user", "content": masked_text}]
        try:
            content = self.llm.complete(messages, json_schema=self.schema, timeout_s=timeout_s)
        except LLMError as exc:
            raise LLMClassifyError(str(exc)) from exc
        except Exception as exc:  # an adapter that leaks its own error type is still "no answer"
            raise LLMClassifyError(f"{type(exc).__name__}: {exc}") from exc
        return parse_labels(content, self.taxonomy)
