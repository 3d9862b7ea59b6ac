"""Input events: decoding one record value into a validated `Event`, or an `InputError`."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any, NamedTuple

import msgspec
import orjson

from streams.contract.event_structs import EventBody, EventType, compile_event_types, union_decoder
from streams.contract.schemas import Check, contract
from streams.contract.times import LATEST_OCCURRED_AT, format_time, is_time, parse_time
from streams.contract.topics import topic_of
from streams.errors import MalformedJson, SchemaViolation, UnknownType, shown


class Event(NamedTuple):
    """A validated input event; `body` holds the schema's fields (`body["case_id"]`).

    Fields the schema does not define are not kept: nothing downstream reads them, and a
    dead letter carries the original bytes anyway.

    A NamedTuple rather than a frozen dataclass: one is built per record, and a tuple is
    several times cheaper to build.
    """

    type: str
    event_id: str
    order_id: str
    occurred_at: datetime
    body: EventBody

    @property
    def case_id(self) -> str:
        return str(self.body["case_id"])

    @property
    def topic(self) -> str:
        return topic_of(self.type)


@cache
def _validators() -> dict[str, Check]:
    return contract().event_validators()


@cache
def _event_types() -> dict[str, EventType]:
    return compile_event_types(contract())


@cache
def _fast() -> tuple[msgspec.json.Decoder[Any], dict[type[EventBody], EventType]]:
    types = _event_types()
    return union_decoder(types), {t.struct: t for t in types.values()}


def event_types() -> frozenset[str]:
    """Every input event type the contract defines."""
    return frozenset(_validators())


_new_event = tuple.__new__


def decode(raw: bytes | str, topic: str | None = None) -> Event:
    """Decode one record value; raise the `InputError` subclass of its dead-letter code.

    `topic`, when given, must be the topic the type belongs to: an `order.*` event on
    `aftersale-events` (or the reverse) is a `schema_violation` that names the right topic.
    """
    decoder, compiled = _fast()
    try:
        body = decoder.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        # ValidationError is a DecodeError; a deeply nested value exhausts msgspec's stack,
        # not orjson's (which refuses depth over 1024). The reference path names the error.
        return decode_checked(raw, topic)
    event_type = compiled[type(body)]
    kind = event_type.name
    if topic is not None and topic_of(kind) != topic:
        raise SchemaViolation(f"event type {shown(kind)} belongs on topic {topic_of(kind)!r}")
    # msgspec left the date-times as text: a refusal is for the reference path to explain.
    for name in event_type.other_times:
        value = getattr(body, name)
        if type(value) is str and not is_time(value):
            return decode_checked(raw, topic)
    try:
        at = parse_time(body.occurred_at)
    except ValueError:
        return decode_checked(raw, topic)
    if at >= LATEST_OCCURRED_AT:
        return decode_checked(raw, topic)
    # tuple.__new__ directly: the NamedTuple's own __new__ is a Python-level call.
    event: Event = _new_event(Event, (kind, body.event_id, body.order_id, at, body))
    return event


def check_key(key: bytes | None, order_id: str) -> None:
    """A live record's key must be its `order_id` (UTF-8): `SchemaViolation` otherwise.

    Kafka places a record by its key; one keyed otherwise (or not at all) lands on another
    partition than its order's state and would be judged against the wrong state, or none.
    """
    if key is None:
        raise SchemaViolation(f"record has no key; its key must be its order_id {order_id!r}")
    if key != order_id.encode("utf-8"):
        raise SchemaViolation(f"record key {shown(key)} is not its order_id {order_id!r}")


def decode_checked(raw: bytes | str, topic: str | None = None) -> Event:
    """`decode()` by orjson and the reference validators: slower, and it explains refusals."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedJson(f"not valid UTF-8 JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise MalformedJson(f"not a JSON object (got {type(obj).__name__})")
    kind = obj.get("type")
    if not isinstance(kind, str):
        if kind is None:
            raise SchemaViolation("missing required field 'type'")
        raise SchemaViolation("field 'type': expected string")
    check = _validators().get(kind)
    if check is None:
        raise UnknownType(f"unknown event type {shown(kind)}")
    if topic is not None and topic_of(kind) != topic:
        raise SchemaViolation(f"event type {shown(kind)} belongs on topic {topic_of(kind)!r}")
    error = check(obj)
    if error is not None:
        raise SchemaViolation(error)
    event_type = _event_types()[kind]
    known = event_type.fields
    fields = {name: value for name, value in obj.items() if name in known}
    for name in event_type.int_fields:  # valid: an integral float, where msgspec wants an int
        value = fields.get(name)
        if type(value) is float:
            fields[name] = int(value)
    try:
        body = msgspec.convert(fields, event_type.struct)
    except msgspec.ValidationError as exc:  # a bug: the Structs and the validators disagree
        raise SchemaViolation(f"{exc} (the compiled event types refuse it)") from None
    at = parse_time(body.occurred_at)
    if at >= LATEST_OCCURRED_AT:
        raise SchemaViolation(
            f"field 'occurred_at': {body.occurred_at!r} is not before "
            f"{format_time(LATEST_OCCURRED_AT)} (deadlines counted from it must stay within "
            "year 9999)"
        )
    event: Event = _new_event(Event, (kind, body.event_id, body.order_id, at, body))
    return event
