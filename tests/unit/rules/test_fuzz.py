"""Fuzzing: raw record bytes into the decode path, and event sequences into the engine.

Whatever a producer writes, decoding ends in an event or in an `InputError` whose code is one
of the contract's dead-letter codes (always the same code for the same bytes), and the engine
ends every record in applied, duplicate or refused: no other exception escapes, so no record
can crash the worker or replay.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.contract.deadletters import dead_letter
from streams.contract.events import decode, decode_checked, event_types
from streams.errors import DEAD_LETTER_CODES, InputError
from streams.rules.engine import Engine
from streams.rules.policy import Policy
from tests.unit.factories import T0, body

TYPES = sorted(event_types())
FIELDS = (
    "event_id", "type", "order_id", "case_id", "occurred_at", "kind", "reason", "amount",
    "merchant_id", "buyer_id", "currency", "decision", "carrier", "waybill", "note",
)  # fmt: skip
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)  # what orjson can write
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(["2026-11-01T10:00:00Z", "o-1", "c-1", "quality", "refund_only", "CNY"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


def verdict(raw: bytes) -> str:
    """An event's type, or the dead-letter code it is refused with; nothing else may happen."""
    try:
        return decode(raw).type
    except InputError as error:
        refused = error
    assert refused.code in DEAD_LETTER_CODES
    assert dead_letter(refused, raw)["error"] == refused.code  # its dead letter can be built
    return refused.code


@given(st.binary(max_size=300))
@settings(max_examples=500)
def test_any_bytes_decode_to_an_event_or_a_stable_dead_letter_code(raw: bytes) -> None:
    assert verdict(raw) == verdict(raw)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid record, its fields swapped, dropped or retyped, then maybe its bytes damaged."""
    record: dict[str, Any] = body(draw(st.sampled_from(TYPES)), event_id="e-1")
    for _ in range(draw(st.integers(0, 4))):
        field = draw(st.sampled_from(FIELDS))
        action = draw(st.sampled_from(["drop", "set", "retype"]))
        if action == "drop":
            record.pop(field, None)
        else:
            record[field] = draw(json_values)
    raw = orjson.dumps(record)
    if draw(st.booleans()):
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.binary(max_size=4)) + raw[at + draw(st.integers(0, 4)) :]
    return raw


@given(mutated())
@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_records_decode_to_an_event_or_a_stable_dead_letter_code(raw: bytes) -> None:
    first = verdict(raw)
    assert verdict(raw) == first
    # the fast path and the reference path agree on whether a record is valid
    try:
        reference: str = decode_checked(raw).type
    except InputError as error:
        reference = error.code
    assert (first in DEAD_LETTER_CODES) == (reference in DEAD_LETTER_CODES), (first, reference)


@st.composite
def event_sequences(draw: st.DrawFn) -> list[bytes]:
    """Valid events of a few orders and cases, in any order, at any times (often late)."""
    records = []
    for n in range(draw(st.integers(1, 40))):
        event_type = draw(st.sampled_from(TYPES))
        at = T0 + timedelta(hours=draw(st.integers(0, 24 * 30)))
        fields: dict[str, Any] = {
            "order_id": f"o-{draw(st.integers(0, 2))}",
            "event_id": f"e-{draw(st.integers(0, 60))}",  # retries: ids repeat
        }
        if event_type.startswith("aftersale."):
            fields["case_id"] = f"c-{draw(st.integers(0, 3))}"
        if event_type == "aftersale.requested":
            fields["kind"] = draw(st.sampled_from(["refund_only", "return_refund"]))
            fields["reason"] = draw(st.sampled_from(["quality", "no_reason"]))
        if event_type == "aftersale.resolved":
            fields["decision"] = draw(st.sampled_from(["refund", "reject", "resume"]))
        records.append(orjson.dumps(body(event_type, at, **fields)))
        del n
    return records


@given(event_sequences(), st.integers(0, 24 * 40))
@settings(max_examples=400, deadline=None)
def test_any_event_sequence_ends_each_record_applied_duplicate_or_refused(
    records: list[bytes], hours: int
) -> None:
    engine = Engine(Policy())
    clock = T0
    for raw in records:
        event = decode(raw)
        clock = max(clock, event.occurred_at)
        engine.advance(clock)
        result = engine.apply(event, clock)
        assert result.verdict in ("applied", "duplicate", "rejected")
        assert (result.error is not None) == (result.verdict == "rejected")
        if result.error is not None:
            assert result.error.code in DEAD_LETTER_CODES
    engine.advance(clock + timedelta(hours=hours))  # and every deadline left fires cleanly
