"""The order-state codec: every state the engine can reach round-trips to equal bytes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings

from streams.contract.events import decode
from streams.errors import ContractError, InputError
from streams.rules.cases import Case
from streams.rules.engine import Engine
from streams.rules.orders import OrderState, next_due
from streams.rules.policy import Policy
from streams.rules.state_codec import decode_due, decode_state, encode
from tests.unit.factories import T0
from tests.unit.strategies import Scenario, scenarios

H = timedelta(hours=1)


def states_along(scenario: Scenario) -> Iterator[OrderState]:
    """Every order state in the store after each step of the engine over the scenario.

    A generator on purpose: the engine mutates states in place, so each one is checked
    before the next step runs.
    """
    engine = Engine(scenario.policy)
    clock: datetime | None = None
    for value in scenario.records:
        try:
            event = decode(orjson.dumps(value))
        except InputError:
            continue
        clock = event.occurred_at if clock is None else max(clock, event.occurred_at)
        engine.advance(clock)
        engine.apply(event, clock)
        yield from engine.store.values()
    if clock is not None and scenario.until is not None and scenario.until > clock:
        engine.advance(scenario.until)
        yield from engine.store.values()


def case(**changes: Any) -> Case:
    base = Case("c-1", "o-1", "return_refund", "quality", 5990, "CNY", "m-1", "b-1")
    return msgspec.structs.replace(base, **changes)


def assert_utc(when: datetime | None) -> None:
    assert when is not None
    assert when.tzinfo is UTC


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_every_state_the_engine_reaches_round_trips(scenario: Scenario) -> None:
    for state in states_along(scenario):
        data = encode(state)
        decoded = decode_state(data)
        assert decoded == state
        assert encode(state) == data
        assert encode(decoded) == data


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_the_due_view_gives_the_due_time_of_the_full_state(scenario: Scenario) -> None:
    kept = Policy(order_retention=timedelta(days=3))  # an order with no open case is due too
    for state in states_along(scenario):
        view = decode_due(encode(state))
        assert view.open == state.open
        assert view.last_at == state.last_at
        for policy in (scenario.policy, kept):
            assert next_due(view.open, view.last_at, policy) == state.next_due(policy)


@pytest.mark.parametrize("version", [1, 3])
def test_the_due_view_refuses_other_versions_as_decode_state_does(version: int) -> None:
    obj = _array()
    obj[0] = version
    with pytest.raises(ContractError, match=f"format version {version}; this build reads"):
        decode_due(orjson.dumps(obj))


def test_every_field_is_encoded_in_declaration_order() -> None:
    # The layout is the Structs' field order: a change to it is a new format version.
    assert [f.name for f in msgspec.structs.fields(Case)] == [
        "case_id", "order_id", "kind", "reason", "amount", "currency", "merchant_id", "buyer_id",
        "phase", "outcome", "rule", "set_at", "due_at", "remaining", "reminded", "resume_phase",
        "version_from", "held", "evidence_asked",
    ]  # fmt: skip
    assert [f.name for f in msgspec.structs.fields(OrderState)] == [
        "order_id", "delivered_at", "paid", "refunded", "event_ids", "open", "closed", "last_at",
        "shipped", "merchant_refunds",
    ]  # fmt: skip
    state = OrderState("o-1", open=case())
    encoded = orjson.loads(encode(state))
    assert len(encoded) == 1 + len(msgspec.structs.fields(OrderState))
    assert len(encoded[6]) == len(msgspec.structs.fields(Case))


def test_empty_state() -> None:
    state = OrderState("o-1")
    data = encode(state)
    assert data == b'[2,"o-1",null,false,false,[],null,{},null,false,0]'
    assert decode_state(data) == state


def test_state_with_an_open_case() -> None:
    at = datetime(2026, 12, 1, 3, 4, 5, 400_000, tzinfo=UTC)
    running = case(
        phase="awaiting_receipt", rule="merchant_receipt", set_at=at, due_at=at + 240 * H
    )
    state = OrderState(
        "o-1", delivered_at=at, paid=True, event_ids={"e-2", "e-1"}, open=running, last_at=at
    )
    data = encode(state)
    assert data == (
        b'[2,"o-1","2026-12-01T03:04:05.400000Z",true,false,["e-1","e-2"],'
        b'["c-1","o-1","return_refund","quality",5990,"CNY","m-1","b-1","awaiting_receipt",null,'
        b'"merchant_receipt","2026-12-01T03:04:05.400000Z","2026-12-11T03:04:05.400000Z",null,'
        b'[],null,null,null,false],{},"2026-12-01T03:04:05.400000Z",false,0]'
    )
    assert decode_state(data) == state


def test_state_with_closed_cases_only() -> None:
    state = OrderState(
        "o-1",
        delivered_at=T0,
        paid=True,
        refunded=True,
        event_ids={"e-3", "e-1", "e-2"},
        closed={"c-2": "rejected", "c-1": "refunded"},
    )
    decoded = decode_state(encode(state))
    assert decoded == state
    assert decoded.open is None
    assert_utc(decoded.delivered_at)


def test_equal_states_give_equal_bytes_whatever_the_insertion_order() -> None:
    one = OrderState("o-1", event_ids={"e-1", "e-2"}, closed={"c-1": "refunded", "c-2": "rejected"})
    two = OrderState("o-1", event_ids={"e-2", "e-1"}, closed={"c-2": "rejected", "c-1": "refunded"})
    assert one == two
    assert encode(one) == encode(two)


def test_escalated_case_with_paused_deadline() -> None:
    escalated = case(
        phase="escalated",
        rule="buyer_return",
        set_at=T0,
        due_at=None,
        remaining=timedelta(days=3, seconds=7, microseconds=11),
        reminded=(timedelta(days=2), H),
        resume_phase="awaiting_return",
    )
    state = OrderState("o-1", event_ids={"e-1"}, open=escalated)
    decoded = decode_state(encode(state))
    assert decoded == state
    assert decoded.open is not None
    assert decoded.open.due_at is None
    assert decoded.open.remaining == timedelta(days=3, seconds=7, microseconds=11)
    assert decoded.open.reminded == (timedelta(days=2), H)


def test_reminded_keeps_its_order() -> None:
    state = OrderState("o-1", open=case(rule="merchant_review", reminded=(H, 24 * H, 2 * H)))
    decoded = decode_state(encode(state))
    assert decoded.open is not None
    assert decoded.open.reminded == (H, 24 * H, 2 * H)


def test_microseconds_survive_and_instants_come_back_utc() -> None:
    at = datetime(2026, 11, 1, 10, 0, 0, 123_457, tzinfo=UTC)
    running = case(
        rule="merchant_review", set_at=at, due_at=at + 48 * H + timedelta(microseconds=1)
    )
    state = OrderState("o-1", delivered_at=at - timedelta(microseconds=1), open=running)
    decoded = decode_state(encode(state))
    assert decoded == state
    assert decoded.open is not None
    for when in (decoded.delivered_at, decoded.open.set_at, decoded.open.due_at):
        assert_utc(when)
    assert decoded.open.set_at is not None
    assert decoded.open.set_at.microsecond == 123_457


def test_instants_before_the_epoch_round_trip() -> None:
    state = OrderState("o-1", delivered_at=datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC))
    assert decode_state(encode(state)) == state


@pytest.mark.parametrize("version", [0, 1, 3, "2", True, 2.0, None])
def test_other_version_is_refused(version: object) -> None:
    obj = _array()
    obj[0] = version
    expected = re.escape(f"format version {version!r}; this build reads version 2")
    with pytest.raises(ContractError, match=expected):
        decode_state(orjson.dumps(obj))


def test_version_1_is_named_as_such() -> None:
    # The JSON-object format of earlier builds: the message tells what to do about it.
    data = b'{"cl":{},"dl":null,"ev":[],"id":"o-1","op":null,"pd":false,"rf":false,"v":1}'
    with pytest.raises(ContractError, match="format version 1; this build reads version 2"):
        decode_state(data)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00\xff garbage", b"[", b"[]", b"null", b"1", b'{"v":2}', b'"x"'],
)
def test_garbage_is_refused(data: bytes) -> None:
    with pytest.raises(ContractError):
        decode_state(data)


@pytest.mark.parametrize(
    "data",
    [
        b"[" * 5000 + b"]" * 5000,
        b'[2,"o-1",null,false,false,[],null,{},' + b"[" * 5000 + b"]" * 5000 + b"]",
    ],
)
def test_deep_nesting_is_refused_not_a_recursion_error(data: bytes) -> None:
    with pytest.raises(ContractError, match="version 2"):
        decode_state(data)


@pytest.mark.parametrize(
    "data",
    [
        b'[2,"o-1","2026-01-01T08:00:00+08:00"]',
        b'[2,"o-1",null,false,false,[],["c-1","o-1","refund_only","quality",1,"CNY","m-1","b-1",'
        b'"review",null,"merchant_review","2026-01-01T00:00:00Z","2026-01-03T08:00:00+08:00"],{}]',
        b'[2,"o-1",null,false,false,[],null,{},"2026-01-01T08:00:00+08:00"]',  # last_at
    ],
)
def test_an_instant_not_in_utc_is_refused(data: bytes) -> None:
    # It would decode to a state equal to the UTC one that encodes to other bytes.
    with pytest.raises(ContractError, match=r"\+08:00 is not UTC"):
        decode_state(data)


def test_a_long_version_is_cut_short_in_the_message() -> None:
    with pytest.raises(ContractError) as refused:
        decode_state(orjson.dumps(["x" * 100_000, "o-1"]))
    assert len(str(refused.value)) < 200


def test_fields_missing_at_the_end_take_their_defaults() -> None:
    # How a field appended with a default is read from state written before it existed.
    assert decode_state(b'[2,"o-1",null,true]') == OrderState("o-1", paid=True)
    # state written before `last_at` was appended
    assert decode_state(b'[2,"o-1",null,false,false,[],null,{}]') == OrderState("o-1")
    # a case written before `version_from` was appended runs under the first version
    written = _array(open_case=True)
    written[6] = written[6][:-3]
    old = decode_state(orjson.dumps(written))
    assert old.open is not None
    assert old.open.version_from is None
    assert old == OrderState("o-1", open=case())
    # state written before `merchant_refunds`, `held` and `evidence_asked` were appended
    written = _array(open_case=True)[:-1]
    written[6] = written[6][:-2]
    old = decode_state(orjson.dumps(written))
    assert old.merchant_refunds == 0
    assert old.open is not None
    assert old.open.held is None
    assert not old.open.evidence_asked


def test_a_held_deadline_round_trips() -> None:
    held = case(phase="awaiting_evidence", rule="buyer_evidence")
    held.held = ("merchant_receipt", timedelta(days=2, seconds=1), (timedelta(days=2),))
    state = OrderState("o-1", open=held, merchant_refunds=2)
    data = encode(state)
    assert b'["merchant_receipt","P2DT1S",["P2D"]]' in data
    assert decode_state(data) == state


def _array(open_case: bool = False) -> list[Any]:
    """The encoded state of order o-1 as a JSON array, to break one element of."""
    decoded: list[Any] = orjson.loads(encode(OrderState("o-1", open=case() if open_case else None)))
    return decoded


def _with(index: int, value: object) -> bytes:
    """State bytes with element `index` of the order's array replaced by `value`."""
    obj = _array()
    obj[index] = value
    return orjson.dumps(obj)


def _with_case(index: int, value: object) -> bytes:
    """State bytes with element `index` of the open case's array replaced by `value`."""
    obj = _array(open_case=True)
    obj[6][index] = value
    return orjson.dumps(obj)


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (_with(6, ["c-1", "o-1"]), r"\$\[6\]"),
        (_with(6, 5), r"\$\[6\]"),
        (_with(2, "2026-11-01T10:00:00"), "timezone"),  # an instant without an offset
        (_with(2, 1793646996993000), r"\$\[2\]"),  # version 1 wrote integer microseconds
        (_with(5, 3), r"\$\[5\]"),
        (_with(7, ["c-1"]), r"\$\[7\]"),
        (_with(7, {"c-1": "lost"}), "lost|Invalid enum"),  # not an outcome
        (_with_case(8, "shipping"), r"\$\[6\]\[8\]"),  # not a phase
        (_with_case(10, "buyer_pays"), r"\$\[6\]\[10\]"),  # not a rule
        (_with_case(4, "5990"), r"\$\[6\]\[4\]"),
        (_with(8, "2026-11-01T10:00:00"), "timezone"),
        (_with(8, 5), r"\$\[8\]"),
        (b'[2,"o-1",null,false,false,[],null,{},null,false,0,"x"]', "length"),  # a newer build's
        (_with(6, [*_array(open_case=True)[6], "x"]), "length"),
    ],
)
def test_malformed_version_2_is_refused(data: bytes, where: str) -> None:
    with pytest.raises(ContractError, match="version 2 is malformed") as refused:
        decode_state(data)
    assert refused.match(where)
