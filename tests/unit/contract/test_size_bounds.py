"""The contract's size bounds: identifiers of 1 to 256 characters, dead letters that stay small
whatever the input, and the largest record of each output topic (`streams.rules.bounds`)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.contract.deadletters import (
    DETAIL_MAX,
    ID_MAX_CHARS,
    KEY_MAX_BYTES,
    ORIGINAL_MAX,
    dead_letter,
    dead_letter_key,
)
from streams.contract.events import decode, decode_checked
from streams.contract.schemas import contract
from streams.contract.topics import ACTIONS, DEADLETTER, NOTIFICATIONS, OUTPUTS
from streams.errors import DEAD_LETTER_CODES, InputError, SchemaViolation
from streams.rules.bounds import largest_batch, largest_record, largest_value
from streams.rules.effects import Action, Reminder
from streams.rules.policy import RULES
from tests.unit.contract.test_schemas import reference
from tests.unit.factories import body

IDS = ("event_id", "order_id", "case_id", "merchant_id", "buyer_id")
ERRORS = {cls.code: cls for cls in InputError.__subclasses__()}


@pytest.mark.parametrize("field", IDS)
@pytest.mark.parametrize("length", [1, ID_MAX_CHARS])
def test_an_identifier_of_1_to_256_characters_is_valid(field: str, length: int) -> None:
    value = body("aftersale.requested", **{field: "\U0001f600" * length})  # 4 bytes each
    assert decode(orjson.dumps(value)).body[field] == value[field]


@pytest.mark.parametrize("field", IDS)
@pytest.mark.parametrize("path", [decode, decode_checked])
def test_a_longer_identifier_is_a_schema_violation_that_does_not_quote_it(
    field: str, path: Any
) -> None:
    value = orjson.dumps(body("aftersale.requested", **{field: "x" * 1_000_000}))
    with pytest.raises(SchemaViolation, match=field) as refused:
        path(value)
    assert len(refused.value.detail) < 200


def test_a_detail_never_quotes_a_large_value_whole() -> None:
    huge = "q" * 500_000
    for value in (
        body("aftersale.requested", kind=huge),
        body("aftersale.requested", currency=huge),
        body("order.paid", occurred_at=huge),
        {"event_id": "e", "type": huge, "order_id": "o", "occurred_at": "2026-11-01T10:00:00Z"},
    ):
        with pytest.raises(InputError) as refused:
            decode(orjson.dumps(value))
        assert len(refused.value.detail) < 300


def validate(record: dict[str, Any]) -> None:
    doc_id = "records/deadletter.json"
    assert contract().validator(doc_id)(record) is None
    assert [e.message for e in reference(doc_id).iter_errors(record)] == []


@st.composite
def values(draw: st.DrawFn) -> bytes:
    """Any bytes, often around the 64 KiB bound (a repeated chunk: drawing 64 KiB is slow)."""
    chunk = draw(st.binary(min_size=1, max_size=16))
    size = draw(
        st.one_of(
            st.integers(0, 64),
            st.integers(ORIGINAL_MAX - 8, ORIGINAL_MAX + 8),
            st.integers(0, 3 * ORIGINAL_MAX),
        )
    )
    return (chunk * (size // len(chunk) + 1))[:size]


@given(
    value=values(),
    code=st.sampled_from(DEAD_LETTER_CODES),
    detail=st.text(max_size=3 * DETAIL_MAX),
    topic=st.one_of(st.none(), st.from_regex(r"\A[a-zA-Z0-9._-]{1,249}\Z")),
    partition=st.integers(0, 2**31 - 1),
    offset=st.integers(0, 2**63 - 1),
)
@settings(max_examples=150, deadline=None)
def test_any_dead_letter_validates_and_stays_within_its_bound(
    value: bytes, code: str, detail: str, topic: str | None, partition: int, offset: int
) -> None:
    where = (partition, offset) if topic is not None else (None, None)
    record = dead_letter(ERRORS[code](detail), value, topic, *where)
    validate(record)
    assert len(orjson.dumps(record)) <= largest_value(DEADLETTER)
    carried = base64.b64decode(record["original_base64"])
    assert carried == value[:ORIGINAL_MAX]
    if len(value) > ORIGINAL_MAX:
        assert (record["truncated"], record["original_size"]) == (True, len(value))
    else:
        assert "truncated" not in record
        assert "original_size" not in record
    if record["original"] is not None:  # text: the carried bytes, but a cut last character
        text = record["original"].encode("utf-8")
        assert carried.startswith(text)
        assert len(carried) - len(text) <= (3 if len(value) > ORIGINAL_MAX else 0)


def test_a_value_cut_inside_a_character_keeps_the_text_before_it() -> None:
    value = b"a" + "é".encode() * ORIGINAL_MAX  # the 64 KiB cut falls inside an é
    record = dead_letter(SchemaViolation("x"), value)
    assert record["original"] == "a" + "é" * (ORIGINAL_MAX // 2 - 1)
    assert record["original_size"] == len(value)


def test_invalid_utf8_before_the_cut_is_no_text() -> None:
    value = b"\xff" + b"a" * ORIGINAL_MAX
    assert dead_letter(SchemaViolation("x"), value)["original"] is None


def test_truncated_and_original_size_go_together() -> None:
    record = dead_letter(SchemaViolation("x"), b"a" * (ORIGINAL_MAX + 1))
    for alone in ("truncated", "original_size"):
        partial = {k: v for k, v in record.items() if k != alone}
        assert contract().validator("records/deadletter.json")(partial) is not None
        assert list(reference("records/deadletter.json").iter_errors(partial))


def test_a_dead_letter_is_keyed_by_a_valid_order_id_else_a_bounded_key() -> None:
    def value(order_id: object) -> bytes:
        return orjson.dumps({"order_id": order_id})

    assert dead_letter_key(value("o-7"), b"k") == b"o-7"
    assert dead_letter_key(value("o" * ID_MAX_CHARS), None) == b"o" * ID_MAX_CHARS
    assert dead_letter_key(value("o" * (ID_MAX_CHARS + 1)), b"k") == b"k"
    assert dead_letter_key(value(""), b"k") == b"k"
    assert dead_letter_key(b"{not json", b"k" * KEY_MAX_BYTES) == b"k" * KEY_MAX_BYTES
    assert dead_letter_key(b"{not json", b"k" * (KEY_MAX_BYTES + 1)) is None


SCHEMA_OF = {
    ACTIONS: "records/action.json",
    NOTIFICATIONS: "records/notification.json",
    DEADLETTER: "records/deadletter.json",
}


@pytest.mark.parametrize("topic", OUTPUTS)
def test_the_largest_record_of_each_output_topic_is_a_valid_record(topic: str) -> None:
    record = largest_record(topic)
    assert contract().validator(SCHEMA_OF[topic])(record) is None
    assert [e.message for e in reference(SCHEMA_OF[topic]).iter_errors(record)] == []
    assert largest_value(topic) == len(orjson.dumps(record))


identifiers = st.text(min_size=1, max_size=ID_MAX_CHARS)
instants = st.datetimes(timezones=st.just(UTC))


@given(
    ids=st.tuples(identifiers, identifiers, identifiers, identifiers),
    action_type=st.sampled_from(["auto_approve", "auto_close", "auto_refund"]),
    rule=st.sampled_from(RULES),
    amount=st.integers(0, 2**53 - 1),
    at=st.tuples(instants, instants),
    offset=st.timedeltas(timedelta(microseconds=1), timedelta(days=36500)),
)
@settings(max_examples=200, deadline=None)
def test_no_action_or_reminder_is_larger_than_the_bound(
    ids: tuple[str, str, str, str],
    action_type: Any,
    rule: Any,
    amount: int,
    at: tuple[datetime, datetime],
    offset: timedelta,
) -> None:
    case_id, order_id, merchant_id, buyer_id = ids
    action = Action(
        action_type, rule, case_id, order_id, merchant_id, buyer_id, "return_refund", amount,
        "CNY", at[0],
    )  # fmt: skip
    reminder = Reminder(rule, offset, case_id, order_id, merchant_id, buyer_id, *at)
    assert len(orjson.dumps(action.record(at[1]))) <= largest_value(ACTIONS)
    assert len(orjson.dumps(reminder.record())) <= largest_value(NOTIFICATIONS)


def test_every_output_topic_has_a_bound_below_the_brokers_default_limit() -> None:
    # Kafka's default max.message.bytes is 1,048,588: the contract's bounds fit it
    for topic in OUTPUTS:
        assert 0 < largest_value(topic) < largest_batch(topic) < 1_048_588
    with pytest.raises(ValueError, match="not an output topic"):
        largest_value("order-events")
