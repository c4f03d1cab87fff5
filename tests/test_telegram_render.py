"""The Telegram renderer and the signed button tokens (no network)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.channels.callback import MAX_CALLBACK_BYTES, CallbackSigner, CallbackTooLong, signing_key
from bot.channels.telegram_render import MAX_CAPTION, MAX_TEXT, TelegramRenderer, split_text, utf16_len
from casestore.clock import FakeClock
from casestore.notify import Button, OutboundMessage


@pytest.fixture
def signer() -> CallbackSigner:
    return CallbackSigner(b"k" * 32, clock=FakeClock(datetime(2026, 11, 20, 6, tzinfo=UTC)))


# ---------------------------------------------------------------- splitting
@pytest.mark.parametrize("text", [
    "短消息",
    "",
    "\n".join(f"第{i}行：楼道灯坏了，请尽快处理。" for i in range(1000)),
    "。".join("这是一句很长的话没有换行" * 3 for _ in range(800)),
    "没有任何标点" * 2000,
    "emoji😀" * 3000,  # astral characters count twice in UTF-16
])
def test_split_keeps_everything_within_the_limit(text: str):
    chunks = split_text(text)
    assert "".join(chunks) == text
    assert all(utf16_len(c) <= MAX_TEXT for c in chunks)
    if utf16_len(text) > MAX_TEXT:
        assert len(chunks) > 1 and all(chunks)


def test_split_prefers_line_then_sentence_boundaries():
    lines = "\n".join(f"第{i}行。" + "字" * 50 for i in range(200))
    assert all(c.endswith("\n") for c in split_text(lines)[:-1])
    sentences = "".join(f"这是第{i}句话，内容很长很长很长。" for i in range(600))
    assert all(c.endswith("。") for c in split_text(sentences)[:-1])


def test_split_never_cuts_a_surrogate_pair():
    text = "a" + "😀" * 5000
    chunks = split_text(text, limit=101)
    assert "".join(chunks) == text
    assert all(utf16_len(c) <= 101 for c in chunks)


# ---------------------------------------------------------------- rendering
def test_render_plain_text_keyboard_on_last_part(signer: CallbackSigner):
    r = TelegramRenderer(signer)
    msg = OutboundMessage(text="x" * 5000, buttons=[[Button("接单", "accept", "JN20261120-0001")], []])
    parts = r.render(msg)
    assert [p.reply_markup is not None for p in parts] == [False, True]
    kb = parts[-1].reply_markup
    assert kb is not None and len(kb.inline_keyboard) == 1
    assert kb.inline_keyboard[0][0].text == "接单"


def test_render_photo_caption_and_overflow(signer: CallbackSigner):
    r = TelegramRenderer(signer)
    short = r.render(OutboundMessage(text="现场照片", photo="FILEID"))
    assert [(p.photo, p.text) for p in short] == [("FILEID", "现场照片")]
    long_text = "说明" * MAX_CAPTION
    long = r.render(OutboundMessage(text=long_text, photo="FILEID"))
    assert long[0].photo == "FILEID" and long[0].text == ""
    assert "".join(p.text for p in long[1:]) == long_text


def test_render_empty_and_keyboard_only(signer: CallbackSigner):
    r = TelegramRenderer(signer)
    assert r.render(OutboundMessage(text="")) == []
    only_kb = r.render(OutboundMessage(text="  ", buttons=[[Button("是", "confirm")]]))
    assert len(only_kb) == 1 and only_kb[0].text and only_kb[0].reply_markup is not None


# ---------------------------------------------------------------- callback tokens
@pytest.mark.parametrize("button", [
    Button("接单", "accept", "JN20261120-0001"),
    Button("5 星", "rate", "JN20261120-0001", "5"),
    Button("有用", "useful", None, "kb-policy-17"),
    Button("人工", "human"),
    Button("自定义", "some_new_action", "JN20261120-9999", "x"),
])
def test_token_roundtrip_fits_64_bytes(signer: CallbackSigner, button: Button):
    data = signer.encode(button)
    assert len(data.encode()) <= MAX_CALLBACK_BYTES and data.startswith("a:")
    assert signer.decode(data, label=button.label) == button


def test_forged_malformed_and_foreign_tokens_are_refused(signer: CallbackSigner):
    data = signer.encode(Button("接单", "accept", "JN20261120-0001"))
    other = CallbackSigner(b"another key", clock=FakeClock(datetime(2026, 11, 20, 6, tzinfo=UTC)))
    for bad in (data[:-1] + ("A" if data[-1] != "A" else "B"), data.replace("0001", "0002"),
                data.replace("a:A:", "a:R:"), other.encode(Button("x", "accept", "JN20261120-0001")),
                "", "accept", "a:A:JN::x", "a:A:JN20261120-0001::zz:!!!", "中文" * 10, "a" * 65):
        assert signer.decode(bad) is None, bad


def test_stale_tokens_are_refused():
    clock = FakeClock(datetime(2026, 11, 20, 6, tzinfo=UTC))
    s = CallbackSigner(b"k" * 32, clock=clock, max_age=timedelta(days=30))
    data = s.encode(Button("接单", "accept", "JN20261120-0001"))
    clock.advance(days=29)
    assert s.decode(data) is not None
    clock.advance(days=2)
    assert s.decode(data) is None


def test_encode_refuses_what_cannot_fit(signer: CallbackSigner):
    with pytest.raises(CallbackTooLong):
        signer.encode(Button("x", "rate", "JN20261120-0001", "y" * 40))
    with pytest.raises(ValueError):
        signer.encode(Button("x", "rate", "JN:1"))
    with pytest.raises(ValueError):
        signer.encode(Button("x", "rate", "JN1", "五"))


def test_signing_key_is_derived_from_the_token_when_not_configured():
    a = signing_key(configured="", bot_token="1:A")
    assert a != signing_key(configured="", bot_token="1:B") and len(a) == 32
    assert signing_key(configured="explicit", bot_token="1:A") == b"explicit"
