"""`streams.contract.events.check_key`: a live record's key is its order_id."""

from __future__ import annotations

import pytest

from streams.contract.events import check_key
from streams.errors import SchemaViolation


def test_the_order_id_as_utf8_is_the_key() -> None:
    check_key("订单-7".encode(), "订单-7")  # does not raise


@pytest.mark.parametrize(
    ("key", "why"),
    [
        (None, "record has no key; its key must be its order_id 'o-1'"),
        (b"o-2", "record key b'o-2' is not its order_id 'o-1'"),
        (b"", "record key b'' is not its order_id 'o-1'"),
        (b"o-1 ", "record key b'o-1 ' is not its order_id 'o-1'"),
    ],
)
def test_any_other_key_or_none_is_a_schema_violation(key: bytes | None, why: str) -> None:
    with pytest.raises(SchemaViolation) as refused:
        check_key(key, "o-1")
    assert refused.value.code == "schema_violation"
    assert refused.value.detail == why
