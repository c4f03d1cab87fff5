"""Wiring: build the embedder, store, retriever, FAQ and LLM from settings, once per process.

Owns: `build_knowledge_service` (cached per settings key), `ingest_from_settings`. The heavy objects (model,
BM25 index, Chroma client) are built once and reused by every `ask`.
Must not: hold retrieval or answer logic.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from knowledge.answers import KnowledgeService
from knowledge.embeddings import Embedder, embedder_from_settings
from knowledge.faq import DEFAULT_FAQ, FaqIndex, load_faq
from knowledge.ingest import IngestReport, Progress, ingest_path
from knowledge.llm import llm_from_settings
from knowledge.retrieval import HybridRetriever
from knowledge.scope import ScopeError, ScopeExample, load_scope_examples
from knowledge.store import ChromaStore, store_from_settings

log = logging.getLogger(__name__)
_lock = threading.Lock()
_services: dict[tuple[str, ...], KnowledgeService] = {}
_components: dict[tuple[str, ...], tuple[Embedder, ChromaStore]] = {}


def _key(settings: Any) -> tuple[str, ...]:
    return (str(settings.chroma_dir), settings.chroma_url, settings.embedding_backend, str(settings.var_dir))


def components(settings: Any) -> tuple[Embedder, ChromaStore]:
    """The process-wide embedder and store for these settings."""
    key = _key(settings)
    with _lock:
        if key not in _components:
            embedder = embedder_from_settings(settings)
            _components[key] = (embedder, store_from_settings(settings, embedder.name))
        return _components[key]


def ingest_from_settings(settings: Any, path: Path | None = None, *,
                         progress: Progress | None = None) -> IngestReport:
    """Ingest settings.knowledge_dir (or path) and refresh a live service's BM25 index."""
    embedder, store = components(settings)
    report = ingest_path(Path(path or settings.knowledge_dir), store=store, embedder=embedder,
                         progress=progress)
    service = _services.get(_key(settings))
    if service is not None and report.changed:
        service.retriever.refresh()
    return report


def build_knowledge_service(settings: Any, *, progress: Progress | None = None,
                            faq_path: Path = DEFAULT_FAQ) -> KnowledgeService:
    """The cached service; an empty index is filled from settings.knowledge_dir first."""
    key = _key(settings)
    if key in _services:
        return _services[key]
    embedder, store = components(settings)
    if store.count() == 0:
        ingest_path(Path(settings.knowledge_dir), store=store, embedder=embedder, progress=progress)
    retriever = HybridRetriever(store=store, embedder=embedder, scope_examples=_scope_examples(settings))
    service = KnowledgeService(retriever=retriever, faq=FaqIndex(load_faq(faq_path), embedder),
                               llm=llm_from_settings(settings))
    with _lock:
        _services.setdefault(key, service)
        return _services[key]


def _scope_examples(settings: Any) -> list[ScopeExample]:
    """The scope examples; a malformed file is logged and left out (the decision falls back to the model without
    them) rather than stopping the bot."""
    try:
        return load_scope_examples(Path(settings.scope_examples))
    except ScopeError as exc:
        log.error("scope examples not used: %s", exc)
        return []


def reset_cache() -> None:
    """Forget the process-wide objects (tests that swap settings)."""
    with _lock:
        _services.clear()
        _components.clear()
