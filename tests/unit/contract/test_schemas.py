"""The JSON Schemas under topics/, our compiled validators, and decode().

Our validators are cross-checked against the reference `jsonschema` implementation. That
implementation only checks `format: date-time` when an optional package is installed, so the
reference here gets its own RFC 3339 checker, written from the RFC's grammar independently of
streams.contract.times.
"""

from __future__ import annotations

import calendar
import copy
import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
import regress
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker, ValidationError, validators
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from streams import errors
from streams.contract.events import decode, event_types
from streams.contract.schemas import SchemaSet, contract, ecma_pattern
from streams.contract.topics import AFTERSALE_EVENTS, ORDER_EVENTS, topic_of
from streams.errors import (
    DEAD_LETTER_CODES,
    ContractError,
    InputError,
    MalformedJson,
    SchemaViolation,
    UnknownType,
)
from tests.repo import CONTRACT_PAGE
from tests.unit.factories import T0, body

CONTRACT_CODES = (
    "malformed_json",
    "schema_violation",
    "unknown_type",
    "unknown_case",
    "case_already_open",
    "not_eligible",
    "invalid_transition",
    "case_limit_reached",  # this project's addition (the policy's max_cases_per_order)
)
ORDER_TYPES = ("paid", "shipped", "delivered", "completed", "cancelled")
AFTERSALE_TYPES = (
    "requested",
    "approved",
    "rejected",
    "return_shipped",
    "received",
    "refunded",
    "withdrawn",
    "escalated",
    "resolved",
    # this project's additions (topics/README.md): evidence, exchange and repair, the
    # merchant's own refund
    "evidence_requested",
    "evidence_provided",
    "reshipped",
    "merchant_refunded",
)
CONTRACT_TYPES = frozenset(
    [f"order.{t}" for t in ORDER_TYPES] + [f"aftersale.{t}" for t in AFTERSALE_TYPES]
)


# --- the reference validator -------------------------------------------------------------

_RFC3339_GRAMMAR = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:[Zz]|[+-](\d{2}):(\d{2}))",
    re.ASCII,
)


def rfc3339_date_time(value: object) -> bool:
    """RFC 3339 section 5.6 `date-time`, with the calendar checks of section 5.7."""
    if not isinstance(value, str):
        return True
    match = _RFC3339_GRAMMAR.fullmatch(value)
    if match is None:
        return False
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    if not 1 <= month <= 12 or not 1 <= day <= calendar.monthrange(year, month)[1]:
        return False
    if hour > 23 or minute > 59 or second > 60:
        return False
    off_hour, off_minute = match.group(7), match.group(8)
    return off_hour is None or (int(off_hour) <= 23 and int(off_minute) <= 59)


def schema_root() -> Path:
    return contract().root


def all_documents() -> dict[str, dict[str, Any]]:
    return {doc_id: copy.deepcopy(doc) for doc_id, doc in contract().documents.items()}


def reference_registry() -> Registry[Any]:
    resources: list[tuple[str, Resource[Any]]] = [
        (doc_id, DRAFT202012.create_resource(doc)) for doc_id, doc in all_documents().items()
    ]
    return Registry().with_resources(resources)


_REGISTRY = reference_registry()
_FORMATS = FormatChecker(formats=())
_FORMATS.checks("date-time")(rfc3339_date_time)


@functools.cache
def _ecma_regex(pattern: str) -> regress.Regex:
    return regress.Regex(pattern)


def _ecma_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    # jsonschema matches `pattern` with Python's `re`; JSON Schema means ECMA-262 (where `$` is
    # the end of the string, not also the place before a final newline): regress is one.
    if validator.is_type(instance, "string") and _ecma_regex(pattern).find(instance) is None:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


#: Draft 2020-12 with ECMA-262 patterns.
EcmaValidator = validators.extend(Draft202012Validator, {"pattern": _ecma_pattern})


def reference(doc_id: str) -> Any:
    schema = contract().documents[doc_id]
    Draft202012Validator.check_schema(schema)
    return EcmaValidator(schema, registry=_REGISTRY, format_checker=_FORMATS)


def doc_ids() -> list[str]:
    return sorted(contract().documents)


def schema_doc_ids() -> list[str]:
    return [d for d in doc_ids() if d != "common.json"]


def event_doc_id(event_type: str) -> str:
    return f"events/{event_type}.json"


def examples() -> Iterator[tuple[str, int, Any]]:
    for doc_id in doc_ids():
        for n, example in enumerate(contract().documents[doc_id].get("examples", [])):
            yield doc_id, n, example


# --- (a) the examples of the schemas themselves -------------------------------------------


def test_reference_date_time_checker_is_sound() -> None:
    assert rfc3339_date_time("2026-11-01T10:00:00Z")
    assert rfc3339_date_time("2026-11-01t10:00:00.123456789+08:00")
    assert not rfc3339_date_time("2026-11-01T10:00:00")
    assert not rfc3339_date_time("2026-02-29T10:00:00Z")
    assert not rfc3339_date_time("2026-11-01T10:00:00+08:60")
    assert not _FORMATS.conforms("yesterday", "date-time")


def test_every_schema_file_has_its_path_as_id() -> None:
    root = schema_root()
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.json"))
    assert files == doc_ids()
    for path in root.rglob("*.json"):
        assert orjson.loads(path.read_bytes())["$id"] == path.relative_to(root).as_posix()


@pytest.mark.parametrize("doc_id", schema_doc_ids())
def test_every_schema_has_an_example(doc_id: str) -> None:
    assert contract().documents[doc_id].get("examples"), f"{doc_id} has no example"


@pytest.mark.parametrize(
    ("doc_id", "index", "example"), [pytest.param(*e, id=f"{e[0]}#{e[1]}") for e in examples()]
)
def test_schema_examples_validate_with_both_validators(
    doc_id: str, index: int, example: Any
) -> None:
    assert contract().validator(doc_id)(example) is None
    errors_found = [e.message for e in reference(doc_id).iter_errors(example)]
    assert errors_found == []


def test_event_schemas_are_exactly_the_contract_types() -> None:
    assert event_types() == CONTRACT_TYPES
    for event_type in CONTRACT_TYPES:
        assert event_doc_id(event_type) in contract().documents


# --- (b) the JSON examples of the contract page --------------------------------------------


def contract_json_blocks() -> list[dict[str, Any]]:
    text = CONTRACT_PAGE.read_text(encoding="utf-8")
    blocks = re.findall(r"^```json\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    return [orjson.loads(block) for block in blocks]


def test_contract_page_has_the_action_and_notification_examples() -> None:
    blocks = contract_json_blocks()
    assert len(blocks) == 2
    assert sorted(next(iter(b)) for b in blocks) == ["action_id", "notification_id"]


@pytest.mark.parametrize(
    ("key", "doc_id"),
    [("action_id", "records/action.json"), ("notification_id", "records/notification.json")],
)
def test_contract_page_examples_validate(key: str, doc_id: str) -> None:
    (record,) = [b for b in contract_json_blocks() if key in b]
    assert contract().validator(doc_id)(record) is None
    assert [e.message for e in reference(doc_id).iter_errors(record)] == []


# --- (c) cross-check against jsonschema -----------------------------------------------------

TIME_FIELDS = frozenset({"occurred_at", "deadline_at", "remind_at", "fired_at"})
INVALID_TIMES = (
    "2026-11-01T10:00:00",
    "2026-11-01",
    "20261101T100000Z",
    "2026-11-01 10:00:00Z",
    "2026-11-01T10:00:00+0800",
    "2026-11-01T10:00:00+08",
    "2026-02-29T10:00:00Z",
    "2026-04-31T10:00:00Z",
    "2026-11-01T24:00:00Z",
    "2026-11-01T10:60:00Z",
    "2026-11-01T10:00:00+24:00",
    "2026-11-01T10:00:00Z\n",
    "2026-11-01T10:00:00.Z",
    "yesterday",
    "",
)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def rfc3339_times(draw: st.DrawFn) -> str:
    """Valid RFC 3339 times both sides accept: any case, offsets, 0-9 fraction digits."""
    year = draw(st.integers(1000, 9998))
    month = draw(st.integers(1, 12))
    day = draw(st.integers(1, calendar.monthrange(year, month)[1]))
    hour, minute, second = (
        draw(st.integers(0, 23)),
        draw(st.integers(0, 59)),
        draw(st.integers(0, 59)),
    )
    fraction = draw(st.text("0123456789", max_size=9))
    sep = draw(st.sampled_from("Tt"))
    offset = draw(
        st.sampled_from(["Z", "z"])
        | st.builds(
            lambda sign, h, m: f"{sign}{h:02d}:{m:02d}",
            st.sampled_from("+-"),
            st.integers(0, 23),
            st.integers(0, 59),
        )
    )
    frac = f".{fraction}" if fraction else ""
    return (
        f"{year:04d}-{month:02d}-{day:02d}{sep}{hour:02d}:{minute:02d}:{second:02d}{frac}{offset}"
    )


time_strings = rfc3339_times() | st.sampled_from(INVALID_TIMES) | st.text(max_size=30)


def resolved_property(doc_id: str, name: str) -> dict[str, Any]:
    sub: dict[str, Any] = contract().documents[doc_id].get("properties", {}).get(name, {})
    if "$ref" in sub:
        found: dict[str, Any] = _REGISTRY.resolver(base_uri=doc_id).lookup(sub["$ref"]).contents
        return found
    return sub


def value_for(doc_id: str, name: str) -> st.SearchStrategy[Any]:
    """A value for property `name` of `doc_id`: often near-valid, sometimes anything."""
    sub = resolved_property(doc_id, name)
    near: list[st.SearchStrategy[Any]] = [json_values]
    if name in TIME_FIELDS or sub.get("format") == "date-time":
        near.append(time_strings)
    if "enum" in sub:
        near.append(st.sampled_from(sub["enum"]) | st.text(max_size=12))
    if "const" in sub:
        near.append(st.just(sub["const"]) | st.sampled_from(sorted(CONTRACT_TYPES)) | st.text())
    if sub.get("type") == "integer" or "integer" in sub.get("type", []):
        near.append(
            st.integers(-5, 10**12)
            | st.sampled_from([0.0, 5.0, 5.5, -1.0, -0.0, True, False, None, "5"])
        )
    if "pattern" in sub or "minLength" in sub:
        near.append(st.sampled_from(["", "CNY", "cny", "USD\n", "EURO", "x", "YQ==", "a b"]))
    return st.one_of(near)


@st.composite
def mutated(draw: st.DrawFn, doc_id: str) -> Any:
    """A valid example of `doc_id` with 1-3 mutations applied (it may remain valid)."""
    doc = contract().documents[doc_id]
    obj: dict[str, Any] = copy.deepcopy(doc["examples"][0])
    names = sorted(doc.get("properties", {}))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["drop", "set", "set", "set", "extra", "whole"]))
        if op == "drop" and obj:
            del obj[draw(st.sampled_from(sorted(obj)))]
        elif op == "set":
            name = draw(st.sampled_from(names))
            obj[name] = draw(value_for(doc_id, name))
        elif op == "extra":
            key = draw(st.text(max_size=10).filter(lambda k: k not in names))
            obj[key] = draw(json_values)
        elif op == "whole" and draw(st.integers(0, 9)) == 0:
            return draw(json_values)
    return obj


@pytest.mark.parametrize("doc_id", schema_doc_ids())
def test_validator_agrees_with_jsonschema(doc_id: str) -> None:
    ours = contract().validator(doc_id)
    theirs = reference(doc_id)

    @settings(max_examples=150, deadline=None)
    @given(mutated(doc_id))
    def agree(value: Any) -> None:
        verdict = ours(value)
        assert (verdict is None) == theirs.is_valid(value), (verdict, value)
        if verdict is not None:
            assert isinstance(verdict, str)
            assert verdict

    agree()


@settings(max_examples=200, deadline=None)
@given(time_strings)
def test_time_format_agrees_with_the_rfc(text: str) -> None:
    ours = contract().validator("events/order.delivered.json")
    value = body("order.delivered", occurred_at=text)
    assert (ours(value) is None) == rfc3339_date_time(text)


# --- (d) decode -------------------------------------------------------------------------------


def raw(value: Any) -> bytes:
    return orjson.dumps(value)


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"not json",
        b'{"type": "order.paid"',
        b"{'type': 'order.paid'}",
        b"\xff\xfe{}",
        b'{"type": "order.\xff"}',
        b"[]",
        b'[{"type": "order.paid"}]',
        b"42",
        b'"order.paid"',
        b"null",
        b"true",
        "[1, 2]",
        "",
    ],
)
def test_decode_malformed_json(value: bytes | str) -> None:
    with pytest.raises(MalformedJson) as info:
        decode(value)
    assert info.value.code == "malformed_json"
    assert info.value.detail


def test_decode_accepts_text_and_bytes() -> None:
    value = body("order.paid")
    assert decode(raw(value)).event_id == value["event_id"]
    assert decode(raw(value).decode()).event_id == value["event_id"]


def test_decode_builds_the_event() -> None:
    value = body("aftersale.requested", occurred_at="2026-11-01T18:00:00.5+08:00", extra=[1])
    event = decode(raw(value))
    assert event.type == "aftersale.requested"
    assert event.event_id == value["event_id"]
    assert event.order_id == "o-7"
    assert event.case_id == "c-42"
    assert event.occurred_at == T0.replace(microsecond=500000)
    assert event.topic == AFTERSALE_EVENTS
    # the schema's fields, as sent; `extra` is not one of them
    assert msgspec.to_builtins(event.body) == {k: v for k, v in value.items() if k != "extra"}


@pytest.mark.parametrize("event_type", sorted(CONTRACT_TYPES))
def test_decode_every_type(event_type: str) -> None:
    event = decode(raw(body(event_type)), topic=topic_of(event_type))
    assert event.type == event_type
    assert event.topic == (ORDER_EVENTS if event_type.startswith("order.") else AFTERSALE_EVENTS)


def test_decode_missing_type() -> None:
    value = body("order.paid")
    del value["type"]
    with pytest.raises(SchemaViolation, match="type"):
        decode(raw(value))


@pytest.mark.parametrize("kind", [None, 1, 1.5, True, ["order.paid"], {"a": 1}])
def test_decode_type_not_a_string(kind: Any) -> None:
    with pytest.raises(SchemaViolation, match="type"):
        decode(raw(body("order.paid", type=kind)))


@pytest.mark.parametrize(
    "kind", ["order.refunded", "aftersale.unknown", "ORDER.PAID", "order.paid ", "", "paid"]
)
def test_decode_unknown_type(kind: str) -> None:
    with pytest.raises(UnknownType, match=re.escape(repr(kind))):
        decode(raw(body("order.paid", type=kind)))


@pytest.mark.parametrize(
    ("event_type", "field"),
    [
        ("order.paid", "event_id"),
        ("order.paid", "order_id"),
        ("order.paid", "occurred_at"),
        ("order.paid", "merchant_id"),
        ("order.paid", "buyer_id"),
        ("order.paid", "amount"),
        ("order.shipped", "carrier"),
        ("aftersale.requested", "case_id"),
        ("aftersale.requested", "kind"),
        ("aftersale.requested", "reason"),
        ("aftersale.requested", "amount"),
        ("aftersale.approved", "case_id"),
        ("aftersale.return_shipped", "waybill"),
        ("aftersale.resolved", "decision"),
    ],
)
def test_decode_missing_required_field(event_type: str, field: str) -> None:
    value = body(event_type)
    del value[field]
    with pytest.raises(SchemaViolation) as info:
        decode(raw(value))
    assert field in info.value.detail
    assert info.value.code == "schema_violation"


@pytest.mark.parametrize(
    ("event_type", "field"),
    [("order.shipped", "waybill"), ("aftersale.rejected", "note"), ("order.paid", "currency")],
)
def test_decode_optional_field_may_be_absent(event_type: str, field: str) -> None:
    value = body(event_type)
    value.pop(field, None)
    assert decode(raw(value)).type == event_type


@pytest.mark.parametrize(
    ("event_type", "fields"),
    [
        ("aftersale.requested", {"kind": "swap"}),
        ("aftersale.requested", {"reason": "changed_mind"}),
        ("aftersale.requested", {"reason": "Quality"}),
        ("aftersale.resolved", {"decision": "approve"}),
        ("aftersale.resolved", {"decision": None}),
        ("aftersale.requested", {"kind": ["refund_only"]}),
    ],
)
def test_decode_bad_enum(event_type: str, fields: dict[str, Any]) -> None:
    (name,) = fields
    with pytest.raises(SchemaViolation, match=name):
        decode(raw(body(event_type, **fields)))


@pytest.mark.parametrize(
    ("event_type", "fields"),
    [
        ("order.paid", {"amount": -1}),
        ("order.paid", {"amount": 2**53}),
        ("order.paid", {"amount": 1e16}),
        ("order.paid", {"amount": 59.9}),
        ("order.paid", {"amount": "5990"}),
        ("order.paid", {"amount": True}),
        ("order.paid", {"currency": "cny"}),
        ("order.paid", {"currency": "RMB "}),
        ("aftersale.requested", {"amount": -1}),
        ("aftersale.refunded", {"amount": -1}),
        ("order.paid", {"event_id": ""}),
        ("order.paid", {"order_id": 7}),
        ("order.paid", {"merchant_id": None}),
        ("aftersale.approved", {"case_id": ""}),
        ("order.delivered", {"occurred_at": "2026-11-01T10:00:00"}),
        ("order.delivered", {"occurred_at": "2026-11-01"}),
        ("order.delivered", {"occurred_at": 1793527200}),
        ("order.delivered", {"occurred_at": "2026-12-31T23:59:60Z"}),
        ("order.delivered", {"occurred_at": "2026-11-01T10:00:00+08:60"}),
    ],
)
def test_decode_schema_violation(event_type: str, fields: dict[str, Any]) -> None:
    (name,) = fields
    with pytest.raises(SchemaViolation, match=name):
        decode(raw(body(event_type, **fields)))


@pytest.mark.parametrize("amount", [0, 5990.0])
def test_decode_integral_amounts(amount: float) -> None:
    assert decode(raw(body("order.paid", amount=amount))).body["amount"] == amount


@pytest.mark.parametrize(
    "occurred_at",
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0000-01-01T00:00:00Z"],
)
def test_decode_time_out_of_range_is_an_input_error(occurred_at: str) -> None:
    # outside datetime's years 1-9999 once in UTC (or year 0): refused as a dead letter, never
    # a crash (OverflowError, ValueError)
    value = raw(body("order.delivered", occurred_at=occurred_at))
    with pytest.raises(SchemaViolation, match="occurred_at"):
        decode(value)


def test_decode_accepts_unknown_extra_fields() -> None:
    value = body("order.delivered", note="x", nested={"a": [1, None]}, amount="not checked")
    event = decode(raw(value))
    assert event.event_id == value["event_id"]
    # accepted, not kept: nothing reads them, and a dead letter would carry the bytes
    assert event.body.get("nested") is None
    with pytest.raises(KeyError):
        event.body["amount"]


@pytest.mark.parametrize(
    ("event_type", "topic", "right"),
    [
        ("order.paid", AFTERSALE_EVENTS, ORDER_EVENTS),
        ("aftersale.requested", ORDER_EVENTS, AFTERSALE_EVENTS),
    ],
)
def test_decode_on_the_wrong_topic(event_type: str, topic: str, right: str) -> None:
    with pytest.raises(SchemaViolation, match=right):
        decode(raw(body(event_type)), topic=topic)


def test_decode_on_the_right_topic() -> None:
    assert decode(raw(body("order.paid")), topic=ORDER_EVENTS).topic == ORDER_EVENTS


def all_subclasses(cls: type[InputError]) -> set[type[InputError]]:
    out: set[type[InputError]] = set()
    for sub in cls.__subclasses__():
        out |= {sub} | all_subclasses(sub)
    return out


def test_input_error_codes_are_the_contracts() -> None:
    subclasses = all_subclasses(InputError)
    codes = [cls.code for cls in subclasses]
    assert sorted(codes) == sorted(CONTRACT_CODES)
    assert sorted(DEAD_LETTER_CODES) == sorted(CONTRACT_CODES)
    assert len(set(DEAD_LETTER_CODES)) == len(DEAD_LETTER_CODES)
    enum = contract().documents["common.json"]["$defs"]["deadletter_code"]["enum"]
    assert sorted(enum) == sorted(CONTRACT_CODES)
    for cls in subclasses:
        assert issubclass(cls, errors.AftersaleError)
        assert not cls.retriable
        assert cls("why").detail == "why"
        assert cls().detail == cls.code


# --- topics.yaml --------------------------------------------------------------------------


def topics_yaml() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(
        (schema_root().parent / "topics.yaml").read_text(encoding="utf-8")
    )
    return data


def test_topics_yaml_value_schemas_exist_and_cover_every_type() -> None:
    topics = topics_yaml()["topics"]
    assert set(topics) == {
        ORDER_EVENTS,
        AFTERSALE_EVENTS,
        "aftersale-actions",
        "aftersale-notifications",
        "aftersale-deadletter",
    }
    for spec in topics.values():
        for doc_id in spec["value_schemas"]:
            assert doc_id in contract().documents
        assert spec["key"] == "order_id"
    for event_type in CONTRACT_TYPES:
        assert event_doc_id(event_type) in topics[topic_of(event_type)]["value_schemas"]
    assert topics[ORDER_EVENTS]["partitions"] == topics[AFTERSALE_EVENTS]["partitions"]


# --- (e) SchemaSet refusals ------------------------------------------------------------------


def schema_dir(tmp_path: Path, *docs: dict[str, Any]) -> Path:
    for n, doc in enumerate(docs):
        (tmp_path / f"s{n}.json").write_bytes(orjson.dumps(doc))
    return tmp_path


@pytest.mark.parametrize(
    "doc",
    [
        {"$id": "x.json", "type": "object", "oneOf": []},
        {"$id": "x.json", "type": "object", "properties": {"a": {"anyOf": []}}},
        {"$id": "x.json", "type": "string", "exclusiveMaximum": 3},
        {"$id": "x.json", "type": "string", "format": "email"},
        {"$id": "x.json", "type": "object", "additionalProperties": {"type": "string"}},
    ],
)
def test_schema_set_refuses_what_it_cannot_enforce(tmp_path: Path, doc: dict[str, Any]) -> None:
    schemas = SchemaSet(schema_dir(tmp_path, doc))
    with pytest.raises(ContractError, match=r"x\.json"):
        schemas.validator("x.json")


@pytest.mark.parametrize(
    "doc",
    [
        {"$id": "x.json", "$ref": "nope.json#/$defs/a"},
        {"$id": "x.json", "properties": {"a": {"$ref": "#/$defs/missing"}}},
        {"$id": "x.json", "$defs": {"a": 1}, "properties": {"a": {"$ref": "#/$defs/a"}}},
    ],
)
def test_schema_set_refuses_bad_refs(tmp_path: Path, doc: dict[str, Any]) -> None:
    schemas = SchemaSet(schema_dir(tmp_path, doc))
    with pytest.raises(ContractError, match=r"\$ref"):
        schemas.validator("x.json")


def test_schema_set_refuses_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="not found"):
        SchemaSet(tmp_path / "absent")


def test_schema_set_refuses_bad_files(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_bytes(b"{not json")
    with pytest.raises(ContractError, match="not valid JSON"):
        SchemaSet(tmp_path)
    (tmp_path / "a.json").write_bytes(b'{"type": "object"}')
    with pytest.raises(ContractError, match=r"\$id"):
        SchemaSet(tmp_path)


def test_schema_set_unknown_id(tmp_path: Path) -> None:
    schemas = SchemaSet(schema_dir(tmp_path, {"$id": "x.json"}))
    with pytest.raises(ContractError, match=r"y\.json"):
        schemas.validator("y.json")


def test_event_schema_needs_a_type_const(tmp_path: Path) -> None:
    (tmp_path / "events").mkdir()
    doc = {"$id": "events/x.json", "type": "object", "properties": {"type": {"type": "string"}}}
    (tmp_path / "events" / "x.json").write_bytes(orjson.dumps(doc))
    with pytest.raises(ContractError, match="const"):
        SchemaSet(tmp_path).event_validators()


def test_schema_set_resolves_relative_refs(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    common = {"$id": "common.json", "$defs": {"id": {"type": "string", "minLength": 1}}}
    doc = {
        "$id": "sub/x.json",
        "type": "object",
        "required": ["a"],
        "properties": {"a": {"$ref": "../common.json#/$defs/id"}},
    }
    (tmp_path / "common.json").write_bytes(orjson.dumps(common))
    (tmp_path / "sub" / "x.json").write_bytes(orjson.dumps(doc))
    check = SchemaSet(tmp_path).validator("sub/x.json")
    assert check({"a": "x"}) is None
    assert check({"a": ""}) is not None
    assert check({"a": 1}) is not None
    assert check({}) is not None


@pytest.mark.parametrize("doc_id", ["records/action.json", "records/notification.json"])
def test_records_refuse_extra_fields(doc_id: str) -> None:
    record = dict(contract().documents[doc_id]["examples"][0], extra=1)
    verdict = contract().validator(doc_id)(record)
    assert verdict is not None
    assert "extra" in verdict
    assert not reference(doc_id).is_valid(record)


@pytest.mark.parametrize(
    ("doc_id", "field", "value"),
    [
        ("records/action.json", "fired_at", "2026-11-03T10:00:00.210+00:00"),
        ("records/action.json", "deadline_at", "2026-11-03T10:00:00z"),
        ("records/notification.json", "type", "reminder"),
        ("records/deadletter.json", "partition", -1),
        ("records/deadletter.json", "original_base64", "not base64!"),
    ],
)
def test_records_refuse_bad_values(doc_id: str, field: str, value: Any) -> None:
    record = dict(contract().documents[doc_id]["examples"][0], **{field: value})
    verdict = contract().validator(doc_id)(record)
    assert verdict is not None
    assert field in verdict
    assert not reference(doc_id).is_valid(record)


@pytest.mark.parametrize(
    ("pattern", "python"),
    [
        ("^[A-Z]{3}$", "^[A-Z]{3}\\Z"),
        ("Z$", "Z\\Z"),
        ("^[A-Za-z0-9+/$]*={0,2}$", "^[A-Za-z0-9+/$]*={0,2}\\Z"),  # `$` in a class is a `$`
        ("a\\$b", "a\\$b"),  # an escaped `$` too
        ("^(x|y$)", "^(x|y\\Z)"),
    ],
)
def test_ecma_dollar_becomes_the_end_of_the_string(pattern: str, python: str) -> None:
    assert ecma_pattern(pattern) == python


@pytest.mark.parametrize("pattern", ["^[A-Z]{3}$", "Z$", "^[A-Za-z0-9+/$]*={0,2}$", "^(x|y$)"])
@pytest.mark.parametrize("text", ["CNY", "CNY\n", "Z", "Z\n", "y", "y\n", "x", "ab$", "\n"])
def test_translated_patterns_match_what_ecma_262_matches(pattern: str, text: str) -> None:
    ecma = _ecma_regex(pattern).find(text) is not None
    assert (re.search(ecma_pattern(pattern), text) is not None) == ecma


@pytest.mark.parametrize("pattern", ["^\\d{3}$", "\\w+", "[\\s]", "\\bx"])
def test_classes_that_differ_between_ecma_and_python_are_refused(pattern: str) -> None:
    with pytest.raises(ContractError, match="means other characters in Python"):
        ecma_pattern(pattern)
