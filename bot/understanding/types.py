"""The public face of message understanding: the result types (frozen: safe to pass around and log) and the
`Classifier` interface the dialogue and the evals call.

Must not: import anything heavy (numpy, sklearn, the LLM client) or the classifier itself, so that bot/ and
evals/ can type against understanding without loading the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

AXES = ("intent", "category", "urgency")


@dataclass(frozen=True)
class AxisPrediction:
    label: str
    confidence: float
    scores: dict[str, float]  # calibrated probabilities over the axis's labels


@dataclass(frozen=True)
class Details:
    building: int | None = None
    unit: int | None = None
    room: str | None = None
    floor: int | None = None  # 三楼 / 3楼 / 3层: never a building
    estate: str | None = None
    place: str | None = None
    time_text: str | None = None
    phones: list[str] = field(default_factory=list)  # masked
    id_numbers: list[str] = field(default_factory=list)  # masked


@dataclass(frozen=True)
class Understanding:
    text: str  # the masked text (safe to store/log/send)
    intent: AxisPrediction
    category: AxisPrediction
    urgency: AxisPrediction
    low_confidence: bool
    uncertain_axes: list[str]
    rule_hits: list[str]
    details: Details
    parts: list[Understanding] = field(default_factory=list)
    mode: str = "offline"  # offline | llm | llm_fallback
    # whom a complaint is about: "staff" (the community's own people) or "other"; None for other intents
    target: str | None = None
    target_roles: tuple[str, ...] = ()  # the staff positions it names (taxonomy.yaml staff_terms keys)

    def labels(self) -> dict[str, str]:
        return {"intent": self.intent.label, "category": self.category.label, "urgency": self.urgency.label}


class Classifier(Protocol):
    """What callers use of a message classifier (bot.understanding.service.MessageClassifier implements it)."""

    def understand(self, text: str) -> Understanding:
        """Labels, confidences, danger hits, details and parts of one resident message; never raises on odd input."""
        ...
