"""`streams.contract.deadletters`: the dead-letter record and its key."""

from __future__ import annotations

import base64

import pytest

from streams.contract.deadletters import dead_letter, dead_letter_key
from streams.errors import MalformedJson


@pytest.mark.parametrize(
    ("original", "record_key", "key"),
    [
        (b'{"type": "x", "order_id": "o-1"}', b"other", b"o-1"),
        (b'{"order_id": "\xe8\xae\xa2\xe5\x8d\x95"}', None, "订单".encode()),
        (b'{"order_id": 7}', b"k", b"k"),  # not a string: not readable
        (b'["order_id", "o-1"]', b"k", b"k"),  # not an object
        (b"\xff not json", b"k", b"k"),
        (b"", None, None),
    ],
)
def test_keyed_by_a_readable_order_id_else_by_the_record_key(
    original: bytes, record_key: bytes | None, key: bytes | None
) -> None:
    assert dead_letter_key(original, record_key) == key


def test_the_record_carries_code_detail_origin_and_exact_bytes() -> None:
    original = b"\xff\xfe{"
    record = dead_letter(MalformedJson("not valid UTF-8 JSON"), original, "t", 3, 42)
    assert record == {
        "error": "malformed_json",
        "detail": "not valid UTF-8 JSON",
        "topic": "t",
        "partition": 3,
        "offset": 42,
        "original": None,
        "original_base64": base64.b64encode(original).decode("ascii"),
    }
