"""The public result types of message understanding (frozen: safe to pass around and log)."""

from __future__ import annotations

from dataclasses import dataclass, field

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
    parts: list["Understanding"] = field(default_factory=list)
    mode: str = "offline"  # offline | llm | llm_fallback

    def labels(self) -> dict[str, str]:
        return {"intent": self.intent.label, "category": self.category.label, "urgency": self.urgency.label}
