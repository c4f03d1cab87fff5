"""Wiring: `KnowledgeRuntime` builds the embedder, store, retriever, FAQ and LLM from settings, lazily, and
keeps them for as long as its owner keeps it (bot.services.Services holds one; a test or an eval run its own).

Owns: `KnowledgeRuntime` (`components()`, `service()`, `ingest()`), and, while callers move to it, the one-shot
helpers `build_knowledge_service`, `ingest_from_settings` and `components`, which build a fresh runtime per
call and cache nothing.
Must not: hold retrieval or answer logic, or keep anything at module level: two runtimes share nothing but
what is on disk (the passage-vector cache, the Chroma directory).
"""

from __future__ import annotations

import logging
import threading
from functools import cached_property
from pathlib import Path
from typing import Any

from knowledge.answers import KnowledgeService
from knowledge.embeddings import Embedder, embedder_from_settings
from knowledge.faq import DEFAULT_FAQ, FaqIndex, load_faq
from knowledge.ingest import IngestReport, Progress, ingest_path
from knowledge.llm import llm_from_settings
from knowledge.retrieval import HybridRetriever, Thresholds
from knowledge.sanitize import Screen, screen_for
from knowledge.scope import ScopeError, ScopeExample, load_scope_examples
from knowledge.segmenter import Segmenter
from knowledge.store import ChromaStore, store_from_settings
from policies.loader import cached_policies
from policies.models import Elsewhere, Lexicon

log = logging.getLogger(__name__)


class KnowledgeRuntime:
    """The knowledge base's heavy objects for one owner, each built on first use and then reused.

    `embedder` replaces the one settings name (tests pass theirs; it is used as given, without the disk cache),
    `thresholds` the "not in the knowledge base" cut-offs that go with the embedder's name, and `segmenter` the
    one keeping jieba's dictionary under settings.var_dir/models."""

    def __init__(self, settings: Any, *, embedder: Embedder | None = None, thresholds: Thresholds | None = None,
                 segmenter: Segmenter | None = None, faq_path: Path | None = None) -> None:
        self.settings = settings
        self._embedder = embedder
        self._thresholds = thresholds
        # the deployment's FAQ (FAQ_PATH, where `quanbot review faq` writes), else the packaged one
        self._faq_path = Path(faq_path or getattr(settings, "faq_path", None) or DEFAULT_FAQ)
        self._lock = threading.RLock()
        self._store: ChromaStore | None = None
        self._service: KnowledgeService | None = None
        # jieba's dictionary and the chunks' tokens on disk, beside the other models (knowledge.segmenter)
        self.segmenter = segmenter or Segmenter(Path(settings.var_dir) / "models")

    @cached_property
    def screen(self) -> Screen:
        """The quarantine rules with this deployment's link allowlist (POLICIES_DIR/links.yaml)."""
        return screen_for(self.settings.policies_dir)

    @cached_property
    def lexicon(self) -> Lexicon:
        """Everyday words → official terms for query expansion (POLICIES_DIR/lexicon.yaml; empty without it)."""
        return cached_policies(str(self.settings.policies_dir)).lexicon

    @cached_property
    def elsewhere(self) -> Elsewhere:
        """Topics other offices handle and who handles them (POLICIES_DIR/elsewhere.yaml; empty without it)."""
        return cached_policies(str(self.settings.policies_dir)).elsewhere

    def components(self) -> tuple[Embedder, ChromaStore]:
        """The embedder and the store (the model is loaded and the Chroma collection opened on first call)."""
        with self._lock:
            if self._embedder is None:
                self._embedder = embedder_from_settings(self.settings)
            if self._store is None:
                self._store = store_from_settings(self.settings, self._embedder.name)
            return self._embedder, self._store

    def service(self, *, progress: Progress | None = None) -> KnowledgeService:
        """The knowledge service; an empty index is filled from settings.knowledge_dir first."""
        with self._lock:
            if self._service is None:
                embedder, store = self.components()
                if store.count() == 0:
                    root = Path(self.settings.knowledge_dir)
                    report = ingest_path(root, store=store, embedder=embedder, progress=progress, screen=self.screen)
                    if not report.documents:  # the bot still starts: every answer says 没有找到
                        log.warning("knowledge base is empty: %s %s", root,
                                    "holds no document" if root.exists() else "does not exist")
                retriever = HybridRetriever(store=store, embedder=embedder, thresholds=self._thresholds,
                                            scope_examples=self._scope_examples(), segmenter=self.segmenter,
                                            lexicon=self.lexicon)
                # an entry citing a document that is not indexed is not served (asked at each match: ingests count)
                faq = FaqIndex(load_faq(self._faq_path), embedder, segmenter=self.segmenter,
                               is_known_doc=lambda doc: retriever.doc_meta(doc) is not None,
                               query_text=retriever.query_text)
                self._service = KnowledgeService(retriever=retriever, faq=faq, llm=llm_from_settings(self.settings),
                                                 screen=self.screen, elsewhere=self.elsewhere)
            return self._service

    def ingest(self, path: Path | None = None, *, progress: Progress | None = None) -> IngestReport:
        """Ingest settings.knowledge_dir (or `path`); a service already built sees the change at once."""
        embedder, store = self.components()
        report = ingest_path(Path(path or self.settings.knowledge_dir), store=store, embedder=embedder,
                             progress=progress, screen=self.screen)
        with self._lock:
            service = self._service
        if service is not None and report.changed:
            service.retriever.refresh()
        return report

    def _scope_examples(self) -> list[ScopeExample]:
        """The scope examples; a malformed file is logged and left out (the decision falls back to the model
        without them) rather than stopping the bot."""
        try:
            return load_scope_examples(Path(self.settings.scope_examples))
        except ScopeError as exc:
            log.error("scope examples not used: %s", exc)
            return []


# --- one-shot helpers for callers that do not hold a runtime yet (bot/, evals/, benchmarks/) -------------
def build_knowledge_service(settings: Any, *, progress: Progress | None = None,
                            faq_path: Path | None = None) -> KnowledgeService:
    """A new service for `settings` (prefer holding a `KnowledgeRuntime`: this builds everything each call)."""
    return KnowledgeRuntime(settings, faq_path=faq_path).service(progress=progress)


def ingest_from_settings(settings: Any, path: Path | None = None, *,
                         progress: Progress | None = None) -> IngestReport:
    """Ingest settings.knowledge_dir (or path); a service built earlier does not see it (use a runtime)."""
    return KnowledgeRuntime(settings).ingest(path, progress=progress)


def components(settings: Any) -> tuple[Embedder, ChromaStore]:
    """A new embedder and store for `settings` (prefer `KnowledgeRuntime.components`)."""
    return KnowledgeRuntime(settings).components()
