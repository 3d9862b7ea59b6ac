"""Produce a simulated stream into Kafka on the wall clock: each record at its occurred_at."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson
from aiokafka import AIOKafkaProducer

from streams.contract.times import parse_time
from streams.contract.topics import AFTERSALE_EVENTS, topic_of


def route(line: bytes) -> tuple[str, bytes | None, datetime | None]:
    """(contract topic, key, when to send) of one record value; bad records go out at once."""
    try:
        body: Any = orjson.loads(line)
    except orjson.JSONDecodeError:
        return AFTERSALE_EVENTS, None, None
    if not isinstance(body, dict):
        return AFTERSALE_EVENTS, None, None
    kind, order_id, at = body.get("type"), body.get("order_id"), body.get("occurred_at")
    topic = topic_of(kind) if isinstance(kind, str) else AFTERSALE_EVENTS
    key = order_id.encode() if isinstance(order_id, str) else None
    try:
        when = parse_time(at) if isinstance(at, str) else None
    except ValueError:
        when = None
    return topic, key, when


async def produce_live(
    lines: Iterable[bytes],
    options: dict[str, Any],
    prefix: str = "",
    report: TextIO = sys.stderr,
) -> int:
    """Send every line when the wall clock reaches its occurred_at; returns how many were sent."""
    producer = AIOKafkaProducer(linger_ms=5, **options)
    await producer.start()
    sent = 0
    try:
        for line in lines:
            topic, key, when = route(line)
            if when is not None:
                delay = (when - datetime.now(UTC)).total_seconds()
                if delay > 0:
                    await producer.flush()
                    await asyncio.sleep(delay)
            await producer.send(prefix + topic, line, key=key)
            sent += 1
            if sent % 500 == 0:
                report.write(f"simulate: {sent} records produced\n")
                report.flush()
        await producer.flush()
    finally:
        await producer.stop()
    report.write(f"simulate: done, {sent} records produced\n")
    return sent
