"""The one LLM seam. Domain code takes an `LLM`; the OpenAI-compatible adapter is one implementation.

Callers must mask personal data before building prompts (policies.masking) and must treat every failure
(timeout, HTTP error, malformed output) as "no answer" and fall back to the offline path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)


class LLMError(RuntimeError):
    """The model did not give a usable answer (timeout, error, malformed output)."""


class LLM(Protocol):
    name: str

    def complete(self, messages: list[dict[str, str]], *, json_schema: dict[str, Any] | None = None,
                 temperature: float = 0.0) -> str:
        """Return the assistant's text, or raise LLMError."""
        ...


@dataclass
class OpenAICompatLLM:
    """Any OpenAI-compatible chat endpoint (DeepSeek, Qwen, vLLM, Ollama) through the `openai` client."""

    base_url: str
    api_key: str
    model: str
    timeout_s: float = 8.0
    name: str = "openai-compatible"

    def __post_init__(self) -> None:
        import openai

        self._client = openai.OpenAI(base_url=self.base_url, api_key=self.api_key, timeout=self.timeout_s,
                                     max_retries=0)

    def complete(self, messages: list[dict[str, str]], *, json_schema: dict[str, Any] | None = None,
                 temperature: float = 0.0) -> str:
        import openai

        kwargs: dict[str, Any] = {}
        if json_schema is not None:
            kwargs["response_format"] = {"type": "json_schema",
                                         "json_schema": {"name": "result", "schema": json_schema, "strict": True}}
        try:
            resp = self._client.chat.completions.create(model=self.model, messages=messages,  # type: ignore[arg-type]
                                                        temperature=temperature, **kwargs)
        except (openai.APIError, ValueError) as exc:  # APIError covers timeouts, HTTP errors, bad JSON
            raise LLMError(f"{type(exc).__name__}: {exc}") from exc
        except Exception as exc:  # the client can surface JSON decode errors of a malformed body
            raise LLMError(f"{type(exc).__name__}: {exc}") from exc
        try:
            content = resp.choices[0].message.content
        except (AttributeError, IndexError, TypeError) as exc:
            raise LLMError("response without choices") from exc
        if not content or not content.strip():
            raise LLMError("empty completion")
        return content


def llm_from_settings(settings: Any) -> LLM | None:
    """The configured LLM, or None in offline mode."""
    if not settings.llm_enabled:
        return None
    return OpenAICompatLLM(base_url=settings.openai_base_url, api_key=settings.openai_api_key.get_secret_value(),
                           model=settings.openai_model, timeout_s=settings.llm_timeout_s)


@dataclass
class LangChainChatLLM:
    """The same seam through langchain's `ChatOpenAI`, used for grounded answers (the design card's path)."""

    base_url: str
    api_key: str
    model: str
    timeout_s: float = 8.0
    name: str = "langchain-chatopenai"

    def __post_init__(self) -> None:
        from langchain_openai import ChatOpenAI
        from pydantic import SecretStr

        self._chat = ChatOpenAI(base_url=self.base_url, api_key=SecretStr(self.api_key), model=self.model,
                                timeout=self.timeout_s, max_retries=0, temperature=0)

    def complete(self, messages: list[dict[str, str]], *, json_schema: dict[str, Any] | None = None,
                 temperature: float = 0.0) -> str:
        chat: Any = self._chat
        if json_schema is not None:
            chat = chat.bind(response_format={"type": "json_schema", "json_schema": {
                "name": "result", "schema": json_schema, "strict": True}})
        try:
            result = chat.invoke([(m["role"], m["content"]) for m in messages])
        except Exception as exc:  # timeouts, HTTP errors and malformed bodies all mean "no answer"
            raise LLMError(f"{type(exc).__name__}: {exc}") from exc
        content = result.content if isinstance(result.content, str) else ""
        if not content.strip():
            raise LLMError("empty completion")
        return content


def answer_llm_from_settings(settings: Any) -> LLM | None:
    """The LLM that writes grounded answers (langchain ChatOpenAI), or None in offline mode."""
    if not settings.llm_enabled:
        return None
    return LangChainChatLLM(base_url=settings.openai_base_url, api_key=settings.openai_api_key.get_secret_value(),
                            model=settings.openai_model, timeout_s=settings.llm_timeout_s)
