"""The dead-letter record: what could not be applied, why, where from, and its exact bytes."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from streams.errors import InputError


def dead_letter_key(original: bytes, record_key: bytes | None) -> bytes | None:
    """The key of the dead letter of `original`: its `order_id` when it has a readable one (a
    JSON object whose `order_id` is a string), else the refused record's own key."""
    try:
        body = orjson.loads(original)
    except orjson.JSONDecodeError:
        return record_key
    order_id = body.get("order_id") if type(body) is dict else None
    return order_id.encode("utf-8") if type(order_id) is str else record_key


def dead_letter(
    error: InputError,
    original: bytes,
    topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
) -> dict[str, Any]:
    """The `aftersale-deadletter` record for `original` refused with `error`."""
    try:
        text: str | None = original.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return {
        "error": error.code,
        "detail": error.detail,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "original": text,
        "original_base64": base64.b64encode(original).decode("ascii"),
    }
