"""Message understanding: intent, category and urgency of a resident's message, plus the details in it.

Owns: the offline classifier (training, cache), the danger-phrase safety net, details extraction, the optional
LLM classifier with fallback, and the `Classifier` interface with its result types (types.py).
Must not: open cases, send messages or store anything but its model cache.
`MessageClassifier` and `load_classifier` are loaded on first use: importing this package or its types must
not load numpy and sklearn (the dialogue types against `Classifier` without the model).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from bot.understanding.types import AxisPrediction, Classifier, Details, Understanding

if TYPE_CHECKING:
    from bot.understanding.service import MessageClassifier, load_classifier

__all__ = ["AxisPrediction", "Classifier", "Details", "MessageClassifier", "Understanding", "load_classifier"]
_LAZY = {"MessageClassifier", "load_classifier"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(import_module("bot.understanding.service"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
