"""The upstream producers of the campaign: each record sent when the wall clock reaches its
occurred_at (as `aftersale simulate --live` does), a third of the orders through librdkafka
(confluent-kafka, whose default partitioner puts a keyed record on CRC32 of its key, not
murmur2: the worker reroutes those), the rest through aiokafka (murmur2). Both ride out a
broker restart: they retry, with delivery timeouts far longer than an outage."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import confluent_kafka
from aiokafka import AIOKafkaProducer

from streams.tools.live_producer import route

AIOKAFKA = "aiokafka"
LIBRDKAFKA = "librdkafka"
#: Longer than any broker outage of the campaign (a restart with log recovery takes 5-20 s).
DELIVERY_TIMEOUT_S = 180


def producer_of(key: bytes | None) -> str:
    """Which producer sends an order's records: a third of the orders go through librdkafka;
    keyless (bad) records through aiokafka. (Chosen by a hash unrelated to CRC32: choosing by
    CRC32 itself would put every librdkafka record on the partitions whose number is a
    multiple of 3.)"""
    if key is not None and hashlib.blake2b(key, digest_size=1).digest()[0] % 3 == 0:
        return LIBRDKAFKA
    return AIOKAFKA


@dataclass
class Produced:
    """What the producers did."""

    sent: Counter[str] = field(default_factory=Counter)
    delivered: Counter[str] = field(default_factory=Counter)
    failed: list[str] = field(default_factory=list)
    #: Orders (keys) sent through each producer.
    orders: dict[str, set[bytes]] = field(
        default_factory=lambda: {AIOKAFKA: set(), LIBRDKAFKA: set()}
    )
    #: Most a record was sent after its occurred_at (the producer itself held up), seconds.
    behind_s: float = 0.0
    #: When the last record was handed to a producer and when all were delivered.
    last_sent_at: datetime | None = None
    done_at: datetime | None = None


async def _until(when: datetime | None, poll: Callable[[], object] | None = None) -> None:
    """Sleep until the wall clock reaches `when` (never earlier: a record is sent at or after
    its occurred_at), calling `poll` every 0.1 s meanwhile when given."""
    if when is None:
        return
    while (left := (when - datetime.now(UTC)).total_seconds()) > 0:
        if poll is None:
            await asyncio.sleep(left)
        else:
            poll()
            await asyncio.sleep(min(left, 0.1))


class MixedProducers:
    """Produces simulated record values into the prefixed input topics on the wall clock."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.produced = Produced()

    async def run(self, lines: Sequence[bytes]) -> Produced:
        routed = [(*route(line), line) for line in lines]
        parts: dict[str, list[tuple[str, bytes | None, datetime | None, bytes]]] = {
            AIOKAFKA: [],
            LIBRDKAFKA: [],
        }
        for topic, key, when, line in routed:
            parts[producer_of(key)].append((topic, key, when, line))
        await asyncio.gather(self._aiokafka(parts[AIOKAFKA]), self._librdkafka(parts[LIBRDKAFKA]))
        self.produced.done_at = datetime.now(UTC)
        return self.produced

    def _sent(self, name: str, key: bytes | None, when: datetime | None) -> None:
        done = self.produced
        done.sent[name] += 1
        if key is not None:
            done.orders[name].add(key)
        now = datetime.now(UTC)
        if when is not None:
            done.behind_s = max(done.behind_s, (now - when).total_seconds())
        done.last_sent_at = now

    async def _aiokafka(
        self, records: list[tuple[str, bytes | None, datetime | None, bytes]]
    ) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            linger_ms=5,
            request_timeout_ms=DELIVERY_TIMEOUT_S * 1000,
            retry_backoff_ms=250,
        )
        await producer.start()
        pending: list[asyncio.Future[Any]] = []

        def delivered(future: asyncio.Future[Any]) -> None:
            if future.cancelled() or future.exception() is not None:
                error = "cancelled" if future.cancelled() else repr(future.exception())
                self.produced.failed.append(f"{AIOKAFKA}: {error}")
            else:
                self.produced.delivered[AIOKAFKA] += 1

        try:
            for topic, key, when, line in records:
                await _until(when)
                future = await producer.send(self.prefix + topic, line, key=key)
                future.add_done_callback(delivered)
                pending.append(future)
                self._sent(AIOKAFKA, key, when)
            await producer.flush()
            if pending:
                await asyncio.wait(pending, timeout=DELIVERY_TIMEOUT_S)
        finally:
            await producer.stop()

    async def _librdkafka(
        self, records: list[tuple[str, bytes | None, datetime | None, bytes]]
    ) -> None:
        def delivered(
            error: confluent_kafka.KafkaError | None, message: confluent_kafka.Message
        ) -> None:
            if error is not None:
                self.produced.failed.append(f"{LIBRDKAFKA}: {error}")
            else:
                self.produced.delivered[LIBRDKAFKA] += 1

        producer = confluent_kafka.Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "linger.ms": 5,
                # the default partitioner (consistent_random: CRC32 of the key), kept on purpose
                "message.timeout.ms": DELIVERY_TIMEOUT_S * 1000,
                "request.timeout.ms": 30_000,
                "reconnect.backoff.max.ms": 1000,
                "logger": logging.getLogger("chaos.librdkafka"),
            }
        )
        for topic, key, when, line in records:
            await _until(when, poll=lambda: producer.poll(0))
            producer.poll(0)
            while True:
                try:
                    producer.produce(self.prefix + topic, line, key, on_delivery=delivered)
                    break
                except BufferError:  # the local queue is full (a long outage): let it drain
                    await asyncio.to_thread(producer.poll, 0.5)
            self._sent(LIBRDKAFKA, key, when)
        left = await asyncio.to_thread(producer.flush, DELIVERY_TIMEOUT_S)
        if left:
            self.produced.failed.append(f"{LIBRDKAFKA}: {left} records still queued after flush")
