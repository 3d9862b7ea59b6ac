"""The dead-letter record: what could not be applied, why, where from, and its exact bytes."""

from __future__ import annotations

import base64
from typing import Any

from streams.errors import InputError


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
