"""The msgspec fast path of decode() against the reference validators, and its compiler."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.contract.event_structs import compile_event_types, union_decoder
from streams.contract.events import Event, decode, decode_checked, event_types
from streams.contract.schemas import SchemaSet, contract
from streams.errors import ContractError, InputError, MalformedJson
from tests.repo import SAMPLE
from tests.unit.factories import body

#: Values near every edge the schemas draw: empty and odd strings, integral and huge floats,
#: booleans where numbers go, times msgspec's own parser would take and RFC 3339 does not.
TRICKY: list[Any] = [
    None, True, False, 0, -1, 1, 5990, 5990.0, 59.9, -0.0, 1e300, 2**64, 2**70, "", " ", "x",
    "5990", "CNY", "cny", "RMB ", "quality", "Quality", "no_reason", "refund_only", "refund",
    "resume", "return_refund", [], {}, ["quality"], {"a": 1},
    "2026-11-01T10:00:00Z", "2026-11-01t10:00:00z", "2026-11-01 10:00:00Z",
    "2026-11-01T10:00:00+0800", "2026-11-01T10:00:00.1234567Z", "2026-11-01T10:00:00.9999999Z",
    "2026-11-01T10:00:00-00:00", "2026-11-01T23:59:60Z", "2026-11-01T10:00:00+24:00",
    "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-02-30T10:00:00Z",
    "2026-11-01T10:00:00", "\u00e9\u4e2d", "a\x00b", "CNY\n", "\nCNY",
    # other event types: a repeated `type` key must pick the same type in both parsers
    "order.shipped", "order.delivered", "aftersale.approved",
    2**53 - 1, 2**53, 2**63, 2**64 - 1, -(2**63) - 1,
]  # fmt: skip


def outcome(decoder: Any, raw: bytes) -> tuple[Any, ...]:
    """What decoding `raw` gives, comparable across the two paths."""
    try:
        event: Event = decoder(raw)
    except InputError as error:
        return (type(error).__name__, error.detail)
    body_fields = msgspec.to_builtins(event.body)
    return (event.type, event.event_id, event.order_id, event.occurred_at, body_fields)


@st.composite
def records(draw: st.DrawFn) -> bytes:
    """A valid record of some type with a few fields changed, dropped or added."""
    value = body(draw(st.sampled_from(sorted(event_types()))))
    names = [*sorted(value), "currency", "waybill", "note", "decision", "extra"]
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(names))
        if draw(st.booleans()):
            value[name] = draw(st.sampled_from(TRICKY))
        else:
            value.pop(name, None)
    ascii_only = draw(st.booleans())  # "\u00e9" escapes or raw UTF-8
    raw = json.dumps(value, ensure_ascii=ascii_only).encode()  # orjson refuses 2**64
    if draw(st.booleans()):  # a repeated key: the last one counts, in both parsers
        name = draw(st.sampled_from(names))
        again = json.dumps({name: draw(st.sampled_from(TRICKY))}).encode()
        raw = raw[:-1] + b"," + again[1:] if len(raw) > 2 else raw
    return raw


@pytest.mark.parametrize("event_type", sorted(event_types()))
def test_fast_path_agrees_on_every_field_and_edge_value(event_type: str) -> None:
    valid = body(event_type)
    fields = [*sorted(valid), "currency", "waybill", "note", "decision", "extra"]
    for name in fields:
        without = {k: v for k, v in valid.items() if k != name}
        raw = json.dumps(without).encode()
        assert outcome(decode, raw) == outcome(decode_checked, raw), raw
        for value in TRICKY:
            raw = json.dumps({**valid, name: value}).encode()
            assert outcome(decode, raw) == outcome(decode_checked, raw), raw


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(records())
def test_fast_path_agrees_with_the_reference_validators(raw: bytes) -> None:
    assert outcome(decode, raw) == outcome(decode_checked, raw)


def test_fast_path_agrees_on_the_shipped_sample() -> None:
    lines = [line for line in SAMPLE.read_bytes().splitlines() if line.strip()]
    assert len(lines) > 100
    for raw in lines:
        assert outcome(decode, raw) == outcome(decode_checked, raw), raw


DEEP = b"[" * 5000 + b"]" * 5000


def _valid_with(extra: bytes) -> bytes:
    """A valid order.delivered record with `extra` (raw JSON members) spliced in."""
    return orjson.dumps(body("order.delivered"))[:-1] + b"," + extra + b"}"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"[]",
        b'"order.paid"',
        b"{",
        b'{"type": "order.paid"} trailing',
        b'{"event_id": "\\ud800"}',
        b'{"type": "order.delivered", "event_id": "a\xff", "order_id": "o"}',
        b"\xef\xbb\xbf{}",
        # what msgspec skips or reads differently from orjson, outside the fields it checks
        b'{"x": ' + DEEP + b"}",
        _valid_with(b'"x": ' + DEEP),
        _valid_with(b'"x": "\xff"'),
        _valid_with(b'"x": "\xed\xa0\x80"'),
        _valid_with(b'"x": "\\ud800"'),
        _valid_with(b'"x": 1e400'),
        _valid_with(b'"x": 1' + b"0" * 400),
        _valid_with(b'"x": {"y": [1' + b"0" * 30 + b"]}"),
        # integers past what orjson parses exactly
        orjson.dumps(body("order.paid"))[:-1] + b', "amount": 1' + b"0" * 30 + b"}",
        orjson.dumps(body("order.paid"))[:-1] + b', "amount": 1' + b"0" * 400 + b"}",
        orjson.dumps(body("order.paid"))[:-1] + b', "amount": 18446744073709551616}',
    ],
)
def test_fast_path_agrees_on_raw_json(raw: bytes) -> None:
    assert outcome(decode, raw) == outcome(decode_checked, raw)


@pytest.mark.parametrize("currency", ["CNY\n", "\nCNY", "CNY\r", "CNY\n\n"])
def test_a_pattern_ending_in_dollar_refuses_a_trailing_newline_on_both_paths(
    currency: str,
) -> None:
    # ECMA-262's `$` is the end of the string; Python's `$` also matches before a final "\n"
    raw = orjson.dumps(body("aftersale.requested", currency=currency))
    refused = ("SchemaViolation", f"field 'currency': {currency!r} does not match ^[A-Z]{{3}}$")
    assert outcome(decode, raw) == outcome(decode_checked, raw) == refused


def test_deep_nesting_is_malformed_json_not_a_crash() -> None:
    for raw in (b'{"x": ' + DEEP + b"}", _valid_with(b'"x": ' + DEEP)):
        with pytest.raises(MalformedJson):
            decode(raw)


def test_unknown_fields_take_the_reference_path() -> None:
    decoder = union_decoder(compile_event_types(contract()))
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        decoder.decode(_valid_with(b'"x": 1'))
    event = decode(_valid_with(b'"x": 1'))
    assert event.type == "order.delivered"
    assert event.body.get("x") is None


def test_integral_float_is_an_integer_on_both_paths() -> None:
    raw = orjson.dumps(body("order.paid", amount=5990.0))
    event = decode(raw)
    assert event.body["amount"] == 5990
    assert type(event.body["amount"]) is int


def test_body_reads_like_the_object() -> None:
    event = decode(orjson.dumps(body("order.paid", currency="USD")))
    assert event.body["currency"] == "USD"
    assert event.body.get("waybill", "none") == "none"
    without = decode(orjson.dumps({k: v for k, v in body("order.paid").items() if k != "currency"}))
    assert without.body.get("currency", "CNY") == "CNY"
    with pytest.raises(KeyError):
        without.body["currency"]


def test_every_contract_type_compiles() -> None:
    types = compile_event_types(contract())
    assert set(types) == set(event_types())
    assert types["order.paid"].int_fields == ("amount",)
    assert types["order.paid"].other_times == ()
    union_decoder(types)


#: A record of the test schema `_schema_set` writes (its date-time is never parsed here).
X_VALID = {"type": "x.happened", "event_id": "e", "order_id": "o", "occurred_at": "t"}


def _schema_set(tmp_path: Path, event: dict[str, Any]) -> SchemaSet:
    folder = tmp_path / "events"
    folder.mkdir()
    doc = {
        "$id": "events/x.json",
        "type": "object",
        "required": ["type", "event_id", "order_id", "occurred_at"],
        "properties": {
            "type": {"const": "x.happened"},
            "event_id": {"type": "string"},
            "order_id": {"type": "string"},
            "occurred_at": {"type": "string", "format": "date-time"},
            **event.pop("properties", {}),
        },
        **event,
    }
    (folder / "x.json").write_bytes(orjson.dumps(doc))
    return SchemaSet(tmp_path)


def test_a_second_time_field_is_checked(tmp_path: Path) -> None:
    schemas = _schema_set(
        tmp_path, {"properties": {"due": {"type": "string", "format": "date-time"}}}
    )
    compiled = compile_event_types(schemas)["x.happened"]
    assert compiled.other_times == ("due",)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"required": ["type", "event_id"]}, "must require"),
        ({"properties": {"n": {"type": "object", "properties": {}}}}, "no msgspec type"),
        ({"properties": {"n": {"type": "integer", "enum": [1, 2]}}}, "plain string"),
        ({"properties": {"n": {"type": "string", "enum": ["a"], "minLength": 2}}}, "plain"),
        ({"properties": {"n": {"minLength": 2}}}, "needs a type"),
        ({"properties": {"n": {"description": "anything"}}}, "needs a type"),
        ({"properties": {"n": {"type": "array"}}}, "events are flat"),
        ({"properties": {"n": {"type": "object"}}}, "events are flat"),
        ({"required": ["type", "event_id", "order_id", "occurred_at", "n"]}, "typed property"),
        ({"properties": {"n": {"type": "boolean", "minimum": 2}}}, "constraints"),
        ({"properties": {"n": {"type": "integer", "format": "date-time"}}}, "is a string"),
        ({"properties": {"n": {"type": "string", "format": "email"}}}, "format"),
        ({"properties": {"occurred_at": {"type": "string"}}}, "occurred_at must be"),
        ({"properties": {"class": {"type": "string"}}}, "identifier"),
    ],
)
def test_compiler_refuses_what_it_cannot_express(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ContractError, match=message):
        compile_event_types(_schema_set(tmp_path, copy.deepcopy(change)))


def test_a_compiled_type_refuses_unknown_fields(tmp_path: Path) -> None:
    decoder = union_decoder(compile_event_types(_schema_set(tmp_path, {})))
    assert decoder.decode(orjson.dumps(X_VALID)).event_id == "e"
    with pytest.raises(msgspec.ValidationError, match="extra"):
        decoder.decode(orjson.dumps({**X_VALID, "extra": 1}))


def test_an_integer_without_maximum_stays_in_what_orjson_parses_exactly(tmp_path: Path) -> None:
    schemas = _schema_set(tmp_path, {"properties": {"n": {"type": "integer", "minimum": -5}}})
    decoder = union_decoder(compile_event_types(schemas))
    for n in (-5, 0, 2**63 - 1):
        assert decoder.decode(orjson.dumps({**X_VALID, "n": n}))["n"] == n
    for n in (-6, 2**63, 2**64, 10**30):
        with pytest.raises(msgspec.ValidationError):
            decoder.decode(json.dumps({**X_VALID, "n": n}).encode())
