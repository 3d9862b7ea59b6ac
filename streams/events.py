"""Input events: decoding one record value into a validated `Event`, or an `InputError`."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any, NamedTuple

import orjson

from streams.errors import MalformedJson, SchemaViolation, UnknownType
from streams.schemas import Check, contract
from streams.times import parse_time

ORDER_TOPIC = "order-events"
AFTERSALE_TOPIC = "aftersale-events"


class Event(NamedTuple):
    """A validated input event; `body` is the decoded JSON object as received.

    A NamedTuple rather than a frozen dataclass: one is built per record, and a tuple is
    several times cheaper to build.
    """

    type: str
    event_id: str
    order_id: str
    occurred_at: datetime
    body: dict[str, Any]

    @property
    def case_id(self) -> str:
        return str(self.body["case_id"])

    @property
    def topic(self) -> str:
        return topic_of(self.type)


def topic_of(event_type: str) -> str:
    """The input topic an event type belongs to, from its prefix."""
    return ORDER_TOPIC if event_type.startswith("order.") else AFTERSALE_TOPIC


@cache
def _validators() -> dict[str, Check]:
    return contract().event_validators()


def event_types() -> frozenset[str]:
    """Every input event type the contract defines."""
    return frozenset(_validators())


_new_event = tuple.__new__


def decode(raw: bytes | str, topic: str | None = None) -> Event:
    """Decode one record value; raise the `InputError` subclass of its dead-letter code.

    `topic`, when given, must be the topic the type belongs to: an `order.*` event on
    `aftersale-events` (or the reverse) is a `schema_violation` that names the right topic.
    """
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
        raise UnknownType(f"unknown event type {kind!r}")
    if topic is not None and topic_of(kind) != topic:
        raise SchemaViolation(f"event type {kind!r} belongs on topic {topic_of(kind)!r}")
    error = check(obj)
    if error is not None:
        raise SchemaViolation(error)
    # tuple.__new__ directly: the NamedTuple's own __new__ is a Python-level call.
    fields = (kind, obj["event_id"], obj["order_id"], parse_time(obj["occurred_at"]), obj)
    event: Event = _new_event(Event, fields)
    return event
