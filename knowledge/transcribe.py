"""The one speech-to-text seam: domain code takes a `Transcriber`; `OpenAICompatTranscriber` is its one adapter.

Owns: `Transcriber`, `TranscriptionError` (with `rejected`: the endpoint refused the audio itself, not its own
trouble), `audio_format` (what a file's first bytes say it is), `OpenAICompatTranscriber` (any OpenAI-compatible
`/v1/audio/transcriptions` endpoint: whisper, FunASR, SenseVoice, through the `openai` client, imported only when
an adapter is built; calls in flight limited per endpoint like the LLM's, knowledge.llm) and
`transcriber_from_settings`.
Callers treat every failure (timeout, HTTP error, 429, malformed answer, too many calls in flight) as "no text"
and fall back: the voice goes to a person as it is.
Must not: read the environment, retry (a resident is waiting and the fallback loses nothing) or log the audio or
the text (a resident's words).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from knowledge.llm import CLIENT_LOGGERS, MIN_CALL_S, _gate_for, time_left

# the containers a speech server decodes (ffmpeg behind whisper / FunASR / SenseVoice), by their first bytes
_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"OggS", 0, "ogg"),  # Telegram voice notes: Opus in Ogg
    (b"#!AMR", 0, "amr"),  # WeChat voice
    (b"#!SILK", 1, "silk"),  # WeChat's own codec: no standard server decodes it (refused as unsupported)
    (b"RIFF", 0, "wav"),
    (b"fLaC", 0, "flac"),
    (b"ID3", 0, "mp3"),
    (b"\x1a\x45\xdf\xa3", 0, "webm"),
    (b"ftyp", 4, "mp4"),
)
SUPPORTED_FORMATS = frozenset({"ogg", "amr", "wav", "flac", "mp3", "webm", "mp4"})
MIME_OF = {"ogg": "audio/ogg", "amr": "audio/amr", "wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg",
           "webm": "audio/webm", "mp4": "audio/mp4"}


def audio_format(data: bytes) -> str | None:
    """The container `data` starts like ("ogg", "amr", ...), or None when it looks like no audio file at all."""
    for magic, at, name in _MAGIC:
        if data[at:at + len(magic)] == magic:
            return name
    if len(data) >= 2 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0:  # an MP3 frame without an ID3 tag
        return "mp3"
    return None


class TranscriptionError(RuntimeError):
    """No text for this audio. `rejected`: the endpoint refused the audio (cannot decode it), so trying again will
    not help; otherwise the endpoint was away, slow, busy or answered nonsense."""

    def __init__(self, message: str, *, rejected: bool = False) -> None:
        super().__init__(message)
        self.rejected = rejected


class Transcriber(Protocol):
    name: str

    def transcribe(self, audio: bytes, *, filename: str, mime_type: str, language: str = "zh",
                   timeout_s: float | None = None) -> str:
        """The spoken words as text ("" when nothing was said), or raise TranscriptionError."""
        ...


class OpenAICompatTranscriber:
    """Any OpenAI-compatible transcription endpoint. At most `max_concurrency` calls in flight in this process; a
    call that finds them all busy waits only within its own timeout, then fails (the caller falls back)."""

    def __init__(self, *, base_url: str, api_key: str, model: str, timeout_s: float = 15.0,
                 max_concurrency: int = 8, name: str = "openai-compatible-stt") -> None:
        import openai

        for logger in CLIENT_LOGGERS:  # their DEBUG lines would carry the request
            logging.getLogger(logger).setLevel(logging.WARNING)
        self.model = model
        self.timeout_s = timeout_s
        self.max_concurrency = max(1, max_concurrency)
        self.name = name
        self._api_error = openai.APIError
        self._status_error = openai.APIStatusError
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key or "unused", timeout=timeout_s,
                                     max_retries=0)
        self._gate = _gate_for(str(self._client.base_url), f"stt:{model}", self.max_concurrency)
        self._transcriptions = self._client.audio.transcriptions  # imported here, not in a resident's turn

    def __repr__(self) -> str:  # never the key
        return f"OpenAICompatTranscriber(base_url={str(self._client.base_url)!r}, model={self.model!r})"

    def transcribe(self, audio: bytes, *, filename: str, mime_type: str, language: str = "zh",
                   timeout_s: float | None = None) -> str:
        budget = time_left(self.timeout_s if timeout_s is None else min(timeout_s, self.timeout_s))
        assert budget is not None
        if budget < MIN_CALL_S:
            raise TranscriptionError(f"no time left ({budget:.2f}s)")
        started = time.monotonic()
        if not self._gate.acquire(budget - MIN_CALL_S):
            raise TranscriptionError(f"busy: {self.max_concurrency} transcriptions in flight")
        try:
            left = budget - (time.monotonic() - started)
            if left < MIN_CALL_S:
                raise TranscriptionError(f"no time left after waiting for a slot ({left:.2f}s)")
            return self._call(audio, filename=filename, mime_type=mime_type, language=language, timeout_s=left)
        finally:
            self._gate.release()

    def _call(self, audio: bytes, *, filename: str, mime_type: str, language: str, timeout_s: float) -> str:
        try:
            resp: Any = self._transcriptions.create(model=self.model, file=(filename, audio, mime_type),
                                                    language=language, response_format="json", timeout=timeout_s)
        except self._status_error as exc:  # 400/415/422: the server cannot read this audio; 429/5xx: its trouble
            rejected = exc.status_code in (400, 413, 415, 422)
            raise TranscriptionError(f"HTTP {exc.status_code}", rejected=rejected) from exc
        except self._api_error as exc:  # timeouts and connection errors
            raise TranscriptionError(type(exc).__name__) from exc
        except Exception as exc:  # a body that is not JSON, or any other surprise, is still "no text"
            raise TranscriptionError(f"malformed response: {type(exc).__name__}") from exc
        text = getattr(resp, "text", None)
        if not isinstance(text, str):
            raise TranscriptionError("response without text")
        return text.strip()


def transcriber_from_settings(settings: Any) -> Transcriber | None:
    """The configured transcriber, or None in offline mode (voice goes to the grid worker as 语音留言)."""
    if not settings.transcription_enabled:
        return None
    return OpenAICompatTranscriber(base_url=settings.transcription_base_url,
                                   api_key=settings.transcription_api_key.get_secret_value(),
                                   model=settings.transcription_model, timeout_s=settings.transcription_timeout_s)
