"""The one LLM seam: domain code takes an `LLM`; `OpenAICompatLLM` is its one adapter.

Owns: `LLM`, `LLMError`, `Deadline` (the time a resident's turn has left for model calls), `OpenAICompatLLM`
(any OpenAI-compatible chat endpoint through the `openai` client, imported only when an adapter is built, with
a per-endpoint limit on calls in flight), `llm_from_settings`.
Callers must mask personal data before building prompts (policies.masking) and must treat every failure
(timeout, HTTP error, malformed output, no time left, too many calls in flight) as "no answer" and fall back to
the offline path.
Must not: read the environment, retry on its own (the caller has a fallback and a resident is waiting) or
log prompts (they are residents' words; the client libraries' own loggers are held at WARNING for that reason).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

# At DEBUG these log every request's options, the messages included: residents' words never reach a log.
CLIENT_LOGGERS = ("openai", "httpx", "httpcore")
MIN_CALL_S = 0.1  # less time than this left: the call is not started (no model answers that fast)


class LLMError(RuntimeError):
    """The model did not give a usable answer (timeout, error, malformed output, no time or slot left)."""


class Deadline:
    """When a resident's turn must have its model answers, on a monotonic clock.

    `applied()` makes it the ambient deadline of the current thread (a context variable): every
    `OpenAICompatLLM` call made inside is cut to the time that is left, so a service whose signature has no
    timeout (the knowledge service, the classifier protocol) still keeps the turn's deadline."""

    __slots__ = ("_at", "_clock")

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._at = clock() + max(0.0, seconds)

    def remaining(self) -> float:
        """Seconds left, never below zero."""
        return max(0.0, self._at - self._clock())

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def __repr__(self) -> str:
        return f"Deadline(remaining={self.remaining():.2f}s)"

    @contextmanager
    def applied(self) -> Iterator[Deadline]:
        """Within the block, LLM calls of this thread end by this deadline (or an earlier one already applied)."""
        outer = _AMBIENT.get()
        inner = self if outer is None or self.remaining() <= outer.remaining() else outer
        token = _AMBIENT.set(inner)
        try:
            yield inner
        finally:
            _AMBIENT.reset(token)


_AMBIENT: ContextVar[Deadline | None] = ContextVar("quanbot_llm_deadline", default=None)


def current_deadline() -> Deadline | None:
    """The deadline applied to this thread's LLM calls (`Deadline.applied`), if any."""
    return _AMBIENT.get()


def time_left(timeout_s: float | None = None) -> float | None:
    """The seconds a model call may take now: `timeout_s` cut to the ambient deadline (None: no bound known)."""
    ambient = _AMBIENT.get()
    if ambient is None:
        return timeout_s
    left = ambient.remaining()
    return left if timeout_s is None else min(timeout_s, left)


class LLM(Protocol):
    name: str

    def complete(self, messages: list[dict[str, str]], *, json_schema: dict[str, Any] | None = None,
                 temperature: float = 0.0, timeout_s: float | None = None) -> str:
        """The assistant's text (a JSON document when `json_schema` is given), or raise LLMError.

        `timeout_s` bounds this call (None: the adapter's own timeout); an applied `Deadline` bounds it too."""
        ...


class _Gate:
    """A counting limit on calls in flight to one endpoint."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._slots = threading.BoundedSemaphore(size)

    def acquire(self, timeout: float) -> bool:
        return self._slots.acquire(timeout=max(0.0, timeout))

    def release(self) -> None:
        self._slots.release()


# Every adapter of one endpoint in this process shares one gate (the classifier and the knowledge service each
# build their own adapter from the same settings); a gate lives as long as an adapter holds it.
_GATES: weakref.WeakValueDictionary[tuple[str, str, int], _Gate] = weakref.WeakValueDictionary()
_GATES_LOCK = threading.Lock()


def _gate_for(base_url: str, model: str, size: int) -> _Gate:
    with _GATES_LOCK:
        gate = _GATES.get((base_url, model, size))
        if gate is None:
            gate = _Gate(size)
            _GATES[(base_url, model, size)] = gate
        return gate


class OpenAICompatLLM:
    """Any OpenAI-compatible chat endpoint (DeepSeek, Qwen, vLLM, Ollama).

    At most `max_concurrency` calls to the endpoint are in flight in this process; a call that finds them all
    busy waits for a slot only within its own time (its timeout, cut to the applied deadline), then fails
    with LLMError so that the caller answers offline."""

    def __init__(self, *, base_url: str, api_key: str, model: str, timeout_s: float = 8.0,
                 max_concurrency: int = 16, name: str = "openai-compatible") -> None:
        import openai

        for logger in CLIENT_LOGGERS:  # whatever LOG_LEVEL says: their DEBUG lines hold whole prompts
            logging.getLogger(logger).setLevel(logging.WARNING)
        self.model = model
        self.timeout_s = timeout_s
        self.max_concurrency = max(1, max_concurrency)
        self.name = name
        self._api_error = openai.APIError
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key or "unused", timeout=timeout_s,
                                     max_retries=0)
        self._gate = _gate_for(str(self._client.base_url), model, self.max_concurrency)
        # the client imports its chat resources on first use (half a second): here, not in a resident's turn
        self._completions = self._client.chat.completions

    def __repr__(self) -> str:  # never the key
        return f"OpenAICompatLLM(base_url={str(self._client.base_url)!r}, model={self.model!r})"

    def complete(self, messages: list[dict[str, str]], *, json_schema: dict[str, Any] | None = None,
                 temperature: float = 0.0, timeout_s: float | None = None) -> str:
        budget = time_left(self.timeout_s if timeout_s is None else min(timeout_s, self.timeout_s))
        assert budget is not None
        if budget < MIN_CALL_S:
            raise LLMError(f"no time left before the deadline ({budget:.2f}s)")
        started = time.monotonic()
        if not self._gate.acquire(budget - MIN_CALL_S):
            raise LLMError(f"busy: {self.max_concurrency} calls in flight for {time.monotonic() - started:.1f}s")
        try:
            left = budget - (time.monotonic() - started)
            if left < MIN_CALL_S:
                raise LLMError(f"no time left after waiting for a slot ({left:.2f}s)")
            return self._call(messages, json_schema=json_schema, temperature=temperature, timeout_s=left)
        finally:
            self._gate.release()

    def _call(self, messages: list[dict[str, str]], *, json_schema: dict[str, Any] | None, temperature: float,
              timeout_s: float) -> str:
        kwargs: dict[str, Any] = {}
        if json_schema is not None:  # structured output: the endpoint must answer with this schema
            kwargs["response_format"] = {"type": "json_schema",
                                         "json_schema": {"name": "result", "schema": json_schema, "strict": True}}
        try:
            resp = self._completions.create(
                model=self.model, messages=cast("list[ChatCompletionMessageParam]", messages),
                temperature=temperature, timeout=timeout_s, **kwargs)
        except self._api_error as exc:  # timeouts, connection and HTTP status errors
            raise LLMError(f"{type(exc).__name__}: {exc}") from exc
        except Exception as exc:  # a body that is not JSON, or any other surprise, is still "no answer"
            raise LLMError(f"malformed response: {type(exc).__name__}: {exc}") from exc
        try:
            content = resp.choices[0].message.content
        except (AttributeError, IndexError, TypeError) as exc:
            raise LLMError("response without choices") from exc
        if not isinstance(content, str) or not content.strip():
            raise LLMError("empty completion")
        return content


def llm_from_settings(settings: Any) -> LLM | None:
    """The configured LLM (classification and grounded answers share it), or None in offline mode."""
    if not settings.llm_enabled:
        return None
    return OpenAICompatLLM(base_url=settings.openai_base_url, api_key=settings.openai_api_key.get_secret_value(),
                           model=settings.openai_model, timeout_s=settings.llm_timeout_s,
                           max_concurrency=settings.llm_max_concurrency)
