"""Factories for raw Telegram update dicts (as the Bot API would send them).

Every factory returns a plain ``dict`` suitable for ``BotApiServer.push_update`` /
``post_webhook`` or ``telegram.Update.de_json(d, bot)``. ``update_id`` and message ids
are unique and increasing within the process unless given explicitly.
By default a private chat is used whose id equals the user id.
"""

from __future__ import annotations

import itertools
import time
import zlib
from typing import Any

__all__ = [
    "DEFAULT_USER_ID",
    "make_callback_update",
    "make_chat",
    "make_command_update",
    "make_document_update",
    "make_edited_text_update",
    "make_location_update",
    "make_message",
    "make_photo_update",
    "make_sticker_update",
    "make_text_update",
    "make_user",
    "make_voice_update",
    "next_update_id",
]

DEFAULT_USER_ID = 10001

_update_ids = itertools.count(1)
_message_ids = itertools.count(1)
_callback_ids = itertools.count(1)
_file_ids = itertools.count(1)


def next_update_id() -> int:
    return next(_update_ids)


def _uid(update_id: int | None) -> int:
    return next_update_id() if update_id is None else update_id


def make_user(
    user_id: int = DEFAULT_USER_ID,
    first_name: str = "张阿姨",
    username: str | None = None,
    language_code: str | None = "zh-hans",
    last_name: str | None = None,
) -> dict[str, Any]:
    user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
    if last_name:
        user["last_name"] = last_name
    if username:
        user["username"] = username
    if language_code:
        user["language_code"] = language_code
    return user


def make_chat(chat_id: int, user: dict[str, Any] | None = None) -> dict[str, Any]:
    if chat_id < 0:
        kind = "supergroup" if str(chat_id).startswith("-100") else "group"
        return {"id": chat_id, "type": kind, "title": "测试群"}
    chat: dict[str, Any] = {"id": chat_id, "type": "private"}
    if user:
        chat["first_name"] = user.get("first_name", "")
        if user.get("username"):
            chat["username"] = user["username"]
    return chat


def make_message(
    user_id: int = DEFAULT_USER_ID,
    chat_id: int | None = None,
    message_id: int | None = None,
    first_name: str = "张阿姨",
    date: int | None = None,
    from_user: dict[str, Any] | None = None,
    **content: Any,
) -> dict[str, Any]:
    """A Message dict; ``content`` holds text/photo/... fields (None values dropped)."""
    user = from_user or make_user(user_id, first_name=first_name)
    chat_id = user["id"] if chat_id is None else chat_id
    msg: dict[str, Any] = {
        "message_id": next(_message_ids) if message_id is None else message_id,
        "from": user,
        "chat": make_chat(chat_id, user),
        "date": int(time.time()) if date is None else date,
    }
    msg.update({k: v for k, v in content.items() if v is not None})
    return msg


def _message_update(update_id: int | None, message: dict[str, Any]) -> dict[str, Any]:
    return {"update_id": _uid(update_id), "message": message}


def make_text_update(
    text: str,
    user_id: int = DEFAULT_USER_ID,
    chat_id: int | None = None,
    update_id: int | None = None,
    first_name: str = "张阿姨",
    message_id: int | None = None,
    entities: list[dict[str, Any]] | None = None,
    reply_to_message: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return _message_update(
        update_id,
        make_message(
            user_id,
            chat_id,
            message_id,
            first_name,
            text=text,
            entities=entities,
            reply_to_message=reply_to_message,
        ),
    )


def make_edited_text_update(
    text: str,
    user_id: int = DEFAULT_USER_ID,
    message_id: int = 1,
    chat_id: int | None = None,
    update_id: int | None = None,
    first_name: str = "张阿姨",
) -> dict[str, Any]:
    msg = make_message(user_id, chat_id, message_id, first_name, text=text)
    msg["edit_date"] = msg["date"]
    return {"update_id": _uid(update_id), "edited_message": msg}


def make_command_update(
    command: str = "/start",
    user_id: int = DEFAULT_USER_ID,
    chat_id: int | None = None,
    update_id: int | None = None,
    first_name: str = "张阿姨",
    args: str | None = None,
    message_id: int | None = None,
) -> dict[str, Any]:
    """``make_command_update("/start", args="ref123")`` -> text "/start ref123".

    ``command`` may already contain arguments ("/start ref"); the bot_command entity covers
    only the command word (including an optional @botname suffix).
    """
    if not command.startswith("/"):
        command = "/" + command
    text = command if not args else f"{command} {args}"
    # entity offsets/lengths are in UTF-16 code units
    length = len(text.split(" ", 1)[0].encode("utf-16-le")) // 2
    return make_text_update(
        text,
        user_id=user_id,
        chat_id=chat_id,
        update_id=update_id,
        first_name=first_name,
        message_id=message_id,
        entities=[{"type": "bot_command", "offset": 0, "length": length}],
    )


def make_callback_update(
    data: str,
    user_id: int = DEFAULT_USER_ID,
    message_id: int = 1,
    chat_id: int | None = None,
    update_id: int | None = None,
    first_name: str = "张阿姨",
    message_text: str = "请选择：",
    bot_user: dict[str, Any] | None = None,
    reply_markup: dict[str, Any] | None = None,
    callback_id: str | None = None,
) -> dict[str, Any]:
    """A callback_query update on a message previously sent by the bot."""
    user = make_user(user_id, first_name=first_name)
    chat_id = user_id if chat_id is None else chat_id
    bot = bot_user or {
        "id": 123456789,
        "is_bot": True,
        "first_name": "泉小智测试",
        "username": "quanbot_test_bot",
    }
    message = make_message(
        chat_id=chat_id,
        message_id=message_id,
        from_user=bot,
        text=message_text,
        reply_markup=reply_markup,
    )
    message["chat"] = make_chat(chat_id, user)
    return {
        "update_id": _uid(update_id),
        "callback_query": {
            "id": callback_id or f"cbq{next(_callback_ids)}",
            "from": user,
            "message": message,
            "chat_instance": f"ci{chat_id}",
            "data": data,
        },
    }


def _file(prefix: str, file_id: str | None) -> tuple[str, str]:
    fid = file_id or f"{prefix}{next(_file_ids)}"
    return fid, f"u{zlib.crc32(fid.encode()):010d}"


def make_photo_update(
    user_id: int = DEFAULT_USER_ID,
    file_id: str | None = None,
    caption: str | None = None,
    chat_id: int | None = None,
    update_id: int | None = None,
    first_name: str = "张阿姨",
    message_id: int | None = None,
) -> dict[str, Any]:
    fid, fuid = _file("AgACAgPhoto", file_id)
    sizes = [
        {"file_id": fid + "_s", "file_unique_id": fuid + "s", "width": 90, "height": 67, "file_size": 1200},
        {"file_id": fid, "file_unique_id": fuid, "width": 1280, "height": 960, "file_size": 120000},
    ]
    return _message_update(
        update_id,
        make_message(user_id, chat_id, message_id, first_name, photo=sizes, caption=caption),
    )


def make_location_update(
    user_id: int = DEFAULT_USER_ID,
    lat: float = 24.874,
    lon: float = 118.676,
    chat_id: int | None = None,
    update_id: int | None = None,
    first_name: str = "张阿姨",
    message_id: int | None = None,
) -> dict[str, Any]:
    return _message_update(
        update_id,
        make_message(
            user_id,
            chat_id,
            message_id,
            first_name,
            location={"latitude": lat, "longitude": lon},
        ),
    )


def make_sticker_update(
    user_id: int = DEFAULT_USER_ID,
    file_id: str | None = None,
    emoji: str = "👍",
    chat_id: int | None = None,
    update_id: int | None = None,
    first_name: str = "张阿姨",
    message_id: int | None = None,
) -> dict[str, Any]:
    fid, fuid = _file("CAACAgSticker", file_id)
    sticker = {
        "file_id": fid,
        "file_unique_id": fuid,
        "type": "regular",
        "width": 512,
        "height": 512,
        "is_animated": False,
        "is_video": False,
        "emoji": emoji,
        "file_size": 20000,
    }
    return _message_update(update_id, make_message(user_id, chat_id, message_id, first_name, sticker=sticker))


def make_voice_update(
    user_id: int = DEFAULT_USER_ID,
    file_id: str | None = None,
    duration: int = 3,
    chat_id: int | None = None,
    update_id: int | None = None,
    first_name: str = "张阿姨",
    message_id: int | None = None,
    mime_type: str = "audio/ogg",
    file_size: int = 8000,
) -> dict[str, Any]:
    fid, fuid = _file("AwACAgVoice", file_id)
    voice = {
        "file_id": fid,
        "file_unique_id": fuid,
        "duration": duration,
        "mime_type": mime_type,
        "file_size": file_size,
    }
    return _message_update(update_id, make_message(user_id, chat_id, message_id, first_name, voice=voice))


def make_document_update(
    user_id: int = DEFAULT_USER_ID,
    file_id: str | None = None,
    file_name: str = "材料.pdf",
    mime_type: str = "application/pdf",
    caption: str | None = None,
    chat_id: int | None = None,
    update_id: int | None = None,
    first_name: str = "张阿姨",
    message_id: int | None = None,
) -> dict[str, Any]:
    fid, fuid = _file("BQACAgDoc", file_id)
    document = {
        "file_id": fid,
        "file_unique_id": fuid,
        "file_name": file_name,
        "mime_type": mime_type,
        "file_size": 50000,
    }
    return _message_update(
        update_id,
        make_message(user_id, chat_id, message_id, first_name, document=document, caption=caption),
    )
