"""Message understanding: intent, category and urgency of a resident's message, plus the details in it.

Owns: the offline classifier (training, cache), the danger-phrase safety net, details extraction, the optional
LLM classifier with fallback. Must not: open cases, send messages or store anything but its model cache.
"""

from bot.understanding.service import MessageClassifier, load_classifier
from bot.understanding.types import AxisPrediction, Details, Understanding

__all__ = ["AxisPrediction", "Details", "MessageClassifier", "Understanding", "load_classifier"]
