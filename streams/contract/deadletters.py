"""The dead-letter record: what could not be applied, why, where from, and its bytes.

A dead letter stays small whatever the input (the contract's size bounds): a value over
`ORIGINAL_MAX` bytes is carried as its first `ORIGINAL_MAX` bytes, with `truncated` and
`original_size`; the detail is cut to `DETAIL_MAX` characters; the key is the record's
`order_id` only when that is a valid identifier. So every dead letter fits in
the bound `streams.rules.bounds` derives, and no input can make one the
broker refuses.
"""

from __future__ import annotations

import base64
from typing import Any, Final

import orjson

from streams.errors import InputError

#: Bytes of the original value a dead letter carries at most (64 KiB).
ORIGINAL_MAX: Final = 64 * 1024
#: Characters of the detail a dead letter carries at most.
DETAIL_MAX: Final = 1024
#: Identifiers (and so dead-letter keys taken from an order_id) have at most this many
#: characters (the contract's size bounds).
ID_MAX_CHARS: Final = 256
#: A refused record's own key is reused for its dead letter only up to this many bytes (an
#: identifier's 256 characters in UTF-8); a longer one is dropped (the dead letter has no key).
KEY_MAX_BYTES: Final = 4 * ID_MAX_CHARS


def dead_letter_key(original: bytes, record_key: bytes | None) -> bytes | None:
    """The key of the dead letter of `original`: its `order_id` when it has a valid one (a
    JSON object whose `order_id` is a string of 1 to 256 characters), else the refused
    record's own key when that is at most KEY_MAX_BYTES, else none."""
    try:
        body = orjson.loads(original)
    except orjson.JSONDecodeError:
        body = None
    order_id = body.get("order_id") if type(body) is dict else None
    if type(order_id) is str and 0 < len(order_id) <= ID_MAX_CHARS:
        return order_id.encode("utf-8")
    if record_key is not None and len(record_key) > KEY_MAX_BYTES:
        return None
    return record_key


def dead_letter(
    error: InputError,
    original: bytes,
    topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
) -> dict[str, Any]:
    """The `aftersale-deadletter` record for `original` refused with `error`."""
    size = len(original)
    carried = original[:ORIGINAL_MAX]
    detail = error.detail
    if len(detail) > DETAIL_MAX:
        detail = detail[: DETAIL_MAX - 1] + "…"
    record: dict[str, Any] = {
        "error": error.code,
        "detail": detail,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "original": _text(carried, truncated=size > ORIGINAL_MAX),
        "original_base64": base64.b64encode(carried).decode("ascii"),
    }
    if size > ORIGINAL_MAX:
        record["truncated"] = True
        record["original_size"] = size
    return record


def _text(carried: bytes, truncated: bool) -> str | None:
    """The carried bytes as text when they are valid UTF-8, else None. A truncated value may
    end inside a character: that incomplete last character is left out of the text."""
    try:
        return carried.decode("utf-8")
    except UnicodeDecodeError as exc:
        # the first error; at the very end, "unexpected end of data" is the cut itself
        if truncated and exc.reason == "unexpected end of data" and exc.end == len(carried):
            return carried[: exc.start].decode("utf-8")
        return None
