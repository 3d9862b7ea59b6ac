"""`aftersale project`: apply `<app id>-status` to Redis, each record exactly once.

The projector reads the status topic with `isolation_level=read_committed` as its own consumer
group (`<app id>-projector`), in batches; a batch goes into Redis atomically with the last
offset of each partition it covers, only if those offsets are still the ones it read
(`RedisStore.apply_batch`). More projectors in the group share the partitions. Where to read
from comes from those offsets in Redis, never from Kafka's committed offsets (which are
committed too, now and then, only so that lag shows in Kafka's tools). While Redis is
unavailable the batch in hand is retried, with a log line when the outage starts, every 30 s
while it lasts and when it ends; nothing is skipped and the loop does not stop. SIGTERM or
SIGINT: the batch in progress is finished or (while Redis is down) left for the next run, and
the consumer leaves its group.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from streams.errors import ConfigError, ContractError
from streams.live.settings import Settings
from streams.readside.projection import Delivered, StatusRecord, decode_record
from streams.readside.redis_store import RedisStore, StoreUnavailable, admitted, connect
from streams.readside.settings import ReadSettings, key_prefix, status_topic

log = logging.getLogger("aftersale.projector")
T = TypeVar("T")

#: Seconds between "still unavailable" lines, progress lines and Kafka offset commits.
OUTAGE_LOG_EVERY = 30.0
PROGRESS_LOG_EVERY = 30.0
KAFKA_COMMIT_EVERY = 5.0
#: Seconds getmany waits for records (also how soon a stop is noticed while idle).
POLL_TIMEOUT = 0.2


class _Stopped(Exception):
    """A stop was asked while waiting for Redis."""


@dataclass(slots=True)
class Stats:
    applied: int = 0
    skipped: int = 0
    undecodable: int = 0
    batches: int = 0
    conflicts: int = 0
    rewinds: int = 0


class _Assignments(ConsumerRebalanceListener):  # type: ignore[misc]
    """Partitions the group gives this projector wait, paused, until it has read where to
    resume from in Redis; revoked ones are forgotten."""

    def __init__(self, projector: Projector) -> None:
        self.projector = projector

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        for tp in revoked:
            self.projector.pending.discard(tp)
            self.projector.expected.pop(tp.partition, None)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if assigned:
            self.projector.pending.update(assigned)
            self.projector.consumer.pause(*assigned)


class Projector:
    """One projector process: a consumer of the status topic and a Redis store."""

    def __init__(
        self,
        worker: Settings,
        read: ReadSettings,
        store: RedisStore,
        consumer: AIOKafkaConsumer | None = None,
    ) -> None:
        self.read = read
        self.store = store
        self.topic = status_topic(worker)
        self.group = read.group(worker)
        self.consumer = consumer or AIOKafkaConsumer(
            group_id=self.group,
            client_id=f"{self.group}-{socket.gethostname()}-{os.getpid()}",
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **worker.client_options(),
        )
        #: Assigned partitions not yet sought to their offset in Redis.
        self.pending: set[TopicPartition] = set()
        #: Per partition: the offset this projector believes stored in Redis.
        self.expected: dict[int, int] = {}
        self.stats = Stats()
        self._last_commit = self._last_progress = time.monotonic()
        self._progress_applied = 0

    async def run(self, stop: asyncio.Event) -> Stats:
        """Consume and apply until `stop` is set."""
        consumer = self.consumer
        try:
            await consumer.start()
        except KafkaError as exc:
            raise ConfigError(f"Kafka: {exc!r}") from None
        try:
            if await self._wait_for_topic(stop):
                consumer.subscribe([self.topic], listener=_Assignments(self))
                await self._loop(stop)
        except _Stopped:
            pass
        finally:
            await self._commit_kafka(force=True)
            await consumer.stop()
        s = self.stats
        log.info(
            "projector stopped: %d records applied, %d skipped as applied before, "
            "%d undecodable, %d batches",
            s.applied,
            s.skipped,
            s.undecodable,
            s.batches,
        )
        return s

    async def _wait_for_topic(self, stop: asyncio.Event) -> bool:
        logged = False
        while not stop.is_set():
            if self.topic in await self.consumer.topics():
                return True
            if not logged:
                log.warning("waiting for topic %s (the worker creates it)", self.topic)
                logged = True
            await _sleep_or_stop(stop, 2.0)
        return False

    async def _loop(self, stop: asyncio.Event) -> None:
        consumer, batch_size = self.consumer, self.read.projector_batch
        while not stop.is_set():
            if self.pending:
                await self._seek_pending(stop)
            fetched = await consumer.getmany(
                timeout_ms=int(POLL_TIMEOUT * 1000), max_records=batch_size
            )
            if not fetched:
                await self._commit_kafka()
                continue
            batch: list[Delivered] = []
            for tp, records in fetched.items():
                for message in records:
                    batch.append(Delivered(tp.partition, message.offset, self._decode(message)))
            await self._apply(batch, stop)
            self._progress()
            await self._commit_kafka()

    def _decode(self, message: Any) -> StatusRecord | None:
        try:
            return decode_record(message.value or b"")
        except ContractError as exc:
            self.stats.undecodable += 1
            log.error(
                "skipping an undecodable record at %s[%d]@%d: %s",
                message.topic,
                message.partition,
                message.offset,
                exc,
            )
            return None

    async def _seek_pending(self, stop: asyncio.Event) -> None:
        pending = set(self.pending)
        stored = await self._until_redis(
            lambda: self.store.stored_offsets({tp.partition for tp in pending}), stop
        )
        assigned = self.consumer.assignment()
        resumed = []
        for tp in pending:
            if tp not in self.pending or tp not in assigned:
                continue  # revoked meanwhile
            offset = stored[tp.partition]
            self.consumer.seek(tp, offset + 1)
            self.expected[tp.partition] = offset
            self.pending.discard(tp)
            resumed.append(tp)
        if resumed:
            self.consumer.resume(*resumed)
            shown = ", ".join(
                f"{tp.partition}@{stored[tp.partition] + 1}"
                for tp in sorted(resumed, key=lambda t: t.partition)
            )
            log.info("partitions assigned, resuming after the offsets in Redis: %s", shown)

    async def _apply(self, batch: list[Delivered], stop: asyncio.Event) -> None:
        expected = dict(self.expected)
        result = await self._until_redis(lambda: self.store.apply_batch(batch, expected), stop)
        stats = self.stats
        stats.batches += 1
        stats.applied += result.applied
        stats.skipped += result.skipped
        stats.conflicts += result.conflicts
        last = {}
        for item in batch:
            last[item.partition] = item.offset
        assigned = self.consumer.assignment()
        for partition, offset in result.offsets.items():
            tp = TopicPartition(self.topic, partition)
            if tp not in assigned or tp in self.pending:
                continue
            self.expected[partition] = offset
            if partition in result.rewound:
                stats.rewinds += 1
                log.warning(
                    "Redis lost applied records of partition %d (its offset there went back "
                    "from %d to %d): reading it again after %d",
                    partition,
                    expected.get(partition, -1),
                    offset,
                    offset,
                )
                self.consumer.seek(tp, offset + 1)
            elif offset > last[partition]:
                # another projector got further (before a rebalance): skip what it applied
                self.consumer.seek(tp, offset + 1)

    async def _until_redis(self, call: Callable[[], Awaitable[T]], stop: asyncio.Event) -> T:
        """`call()`, retried while Redis is unavailable (never given up on, never skipped);
        raises _Stopped if asked to stop meanwhile."""
        delay, since, said = 0.1, 0.0, 0.0
        while True:
            try:
                result = await call()
            except StoreUnavailable as exc:
                now = time.monotonic()
                if not since:
                    since = said = now
                    log.warning(
                        "Redis at %s is unavailable (%s): waiting for it, retrying every "
                        "%.1f s at most; no record is skipped",
                        self.read.redis_url.redacted,
                        exc,
                        self.read.projector_retry_max,
                    )
                elif now - said >= OUTAGE_LOG_EVERY:
                    said = now
                    log.warning(
                        "Redis still unavailable after %.0f s (%s); still waiting", now - since, exc
                    )
                if await _sleep_or_stop(stop, delay):
                    raise _Stopped from None
                delay = min(delay * 2, self.read.projector_retry_max)
                continue
            if since:
                log.warning(
                    "Redis is back after %.1f s of outage: catching up", time.monotonic() - since
                )
            return result

    def _progress(self) -> None:
        now = time.monotonic()
        if now - self._last_progress < PROGRESS_LOG_EVERY:
            return
        done = self.stats.applied - self._progress_applied
        log.info(
            "applied %d records in the last %.0f s (%.0f/s); %d in all",
            done,
            now - self._last_progress,
            done / (now - self._last_progress),
            self.stats.applied,
        )
        self._last_progress, self._progress_applied = now, self.stats.applied

    async def _commit_kafka(self, force: bool = False) -> None:
        """Commit the applied offsets to Kafka too, now and then: not to resume from (Redis
        says where), only so that the group's lag shows in Kafka's tools."""
        now = time.monotonic()
        if not force and now - self._last_commit < KAFKA_COMMIT_EVERY:
            return
        self._last_commit = now
        assigned = self.consumer.assignment()
        offsets = {
            tp: OffsetAndMetadata(self.expected[tp.partition] + 1, "")
            for tp in assigned
            if tp not in self.pending and self.expected.get(tp.partition, -1) >= 0
        }
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except KafkaError as exc:
            log.debug("Kafka offset commit (for lag only) failed: %r", exc)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds`, or less if `stop` is set meanwhile; True if it is set."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True


async def project(worker: Settings, read: ReadSettings, stop: asyncio.Event) -> Stats:
    """Run a projector until `stop` is set (refused by Redis: StoreRefused, before Kafka)."""
    client = connect(read)
    try:
        store = RedisStore(client, key_prefix(worker), status_topic(worker))
        answering = await admitted(store, read.redis_url.redacted)
        projector = Projector(worker, read, store)
        log.info(
            "projector: topic %s, group %s, Redis %s, batches of up to %d records",
            projector.topic,
            projector.group,
            read.redis_url.redacted,
            read.projector_batch,
        )
        if not answering:
            log.warning("Redis at %s is not answering yet: waiting for it", read.redis_url.redacted)
        return await projector.run(stop)
    finally:
        await client.aclose()


async def _main(worker: Settings, read: ReadSettings) -> Stats:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return await project(worker, read, stop)


def run(args: argparse.Namespace) -> int:
    """The `aftersale project` command."""
    worker = Settings.from_env()
    read = ReadSettings.from_env()
    logging.basicConfig(
        level=args.loglevel.upper(), format="[%(asctime)s] [%(levelname)s] %(name)s: %(message)s"
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    asyncio.run(_main(worker, read))
    return 0
