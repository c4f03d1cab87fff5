"""The one LLM seam: domain code takes an `LLM`; `OpenAICompatLLM` is its one adapter.

Owns: `LLM`, `LLMError`, `OpenAICompatLLM` (any OpenAI-compatible chat endpoint through the `openai` client,
imported only when an adapter is built), `llm_from_settings`.
Callers must mask personal data before building prompts (policies.masking) and must treat every failure
(timeout, HTTP error, malformed output) as "no answer" and fall back to the offline path.
Must not: read the environment, retry on its own (the caller has a fallback and a resident is waiting) or
log prompts (they are residents' words).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam


class LLMError(RuntimeError):
    """The model did not give a usable answer (timeout, error, malformed output)."""


class LLM(Protocol):
    name: str

    def complete(self, messages: list[dict[str, str]], *, json_schema: dict[str, Any] | None = None,
                 temperature: float = 0.0) -> str:
        """The assistant's text (a JSON document when `json_schema` is given), or raise LLMError."""
        ...


class OpenAICompatLLM:
    """Any OpenAI-compatible chat endpoint (DeepSeek, Qwen, vLLM, Ollama)."""

    def __init__(self, *, base_url: str, api_key: str, model: str, timeout_s: float = 8.0,
                 name: str = "openai-compatible") -> None:
        import openai

        self.model = model
        self.timeout_s = timeout_s
        self.name = name
        self._api_error = openai.APIError
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key or "unused", timeout=timeout_s,
                                     max_retries=0)

    def __repr__(self) -> str:  # never the key
        return f"OpenAICompatLLM(base_url={str(self._client.base_url)!r}, model={self.model!r})"

    def complete(self, messages: list[dict[str, str]], *, json_schema: dict[str, Any] | None = None,
                 temperature: float = 0.0) -> str:
        kwargs: dict[str, Any] = {}
        if json_schema is not None:  # structured output: the endpoint must answer with this schema
            kwargs["response_format"] = {"type": "json_schema",
                                         "json_schema": {"name": "result", "schema": json_schema, "strict": True}}
        try:
            resp = self._client.chat.completions.create(
                model=self.model, messages=cast("list[ChatCompletionMessageParam]", messages),
                temperature=temperature, **kwargs)
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
                           model=settings.openai_model, timeout_s=settings.llm_timeout_s)
