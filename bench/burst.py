"""(e) of bench/stream.py: a promotion's burst, N deadlines due in the same second.

    python bench/burst.py [--burst 1000000] [--read-rate 6000]   (by itself: one worker)

N requests are back-dated so that every one falls due at the same instant T, a little after
the worker is expected to have read them all. From just before T the bench ingests other
requests at a steady rate and samples, every half second, the worker group's lag on the input
and its committed offsets; once N more actions are on the actions topic it reads them
(read_committed) and prints:

- the drain rate: N / (the last action's `fired_at` - T), and when the last became visible;
- ingestion during the drain: the group's largest lag, in records and in seconds of input at
  the ingest rate, and in how many half-second samples the committed offsets moved on.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python bench/burst.py`
from bench.harness import (
    BOOTSTRAP,
    PARTITIONS,
    REVIEW_S,
    Worker,
    group_lag,
    produce,
    request,
    wait_drained,
    write_policy,
)
from streams.contract.times import format_time, parse_time
from streams.contract.topics import load_topic_specs
from streams.live.admin import create_topics, delete_topics_named

#: The burst falls due this long after the bench expects the worker to have read it.
MARGIN_S = 30.0
#: Fires per second the drain is to reach (issue 21).
TARGET = 10_000


@dataclass(slots=True)
class Drain:
    """What the half-second samples saw while the burst drained."""

    lags: list[int] = field(default_factory=list)
    moved: int = 0
    samples: int = 0
    #: When the last of the burst's actions was on the actions topic (None: not in time).
    done: datetime | None = None


async def burst(
    admin: AIOKafkaAdminClient, prefix: str, group: str, n: int, first: int, read_rate: float
) -> None:
    """Burst of `n` requests with case ids from `first` on, at a worker of consumer group
    `group` that reads about `read_rate` events/s (which times the deadline)."""
    topic, actions = prefix + "aftersale-events", prefix + "aftersale-actions"
    expected = n / (0.7 * read_rate)
    due = datetime.now(UTC) + timedelta(seconds=expected + MARGIN_S)
    print(
        f"(e) producing {n:,} requests, all due at {format_time(due)} "
        f"(in {expected:.0f} + {MARGIN_S:.0f} s)...",
        file=sys.stderr,
    )
    before = await _end(actions)
    requested = parse_time(format_time(due - timedelta(seconds=REVIEW_S)))  # as sent
    due = requested + timedelta(seconds=REVIEW_S)
    await produce(prefix, (request(prefix, first + i, requested) for i in range(n)))
    await wait_drained(admin, group, 7200, topic)
    left = (due - datetime.now(UTC)).total_seconds()
    if left <= 0:
        print(f"(e) the worker read the burst {-left:.0f} s after it fell due: no figures")
        return
    print(f"(e) read; it falls due in {left:.0f} s", file=sys.stderr)
    await asyncio.sleep(max(0.0, left - 2))
    rate = read_rate / 4  # ingestion goes on: far-off requests at a quarter of the read rate
    seconds = max(30.0, 2 * n / TARGET)
    later = due + timedelta(days=1)
    filler: Iterator[tuple[bytes, bytes]] = (
        request(prefix, first + n + i, later) for i in range(int(rate * seconds))
    )
    sampling = asyncio.create_task(
        _sample(admin, group, topic, actions, before + n, time.monotonic() + seconds + 600)
    )
    await produce(prefix, filler, rate)
    drain = await sampling
    if drain.done is None:
        print(f"(e) not all {n:,} actions were on the actions topic within {seconds + 600:.0f} s")
        return
    fired = await _fired_at(actions, due)
    last = (max(fired) - due).total_seconds()
    seen = (drain.done - due).total_seconds()
    early = sum(1 for at in fired if at < due)
    print(
        f"(e) burst of {n:,} deadlines due in the same second: {len(fired):,} fired, early: "
        f"{early}; the last fired {last:.1f} s after the deadline: {n / last:,.0f} fires/s "
        f"(target >= {TARGET:,}); all on the topic after {seen:.1f} s"
    )
    worst = max(drain.lags, default=0)
    print(
        f"    ingestion at {rate:,.0f} records/s meanwhile: the group's lag peaked at "
        f"{worst:,} records ({worst / rate:.1f} s of input); the committed offsets moved on "
        f"in {drain.moved} of {drain.samples} half-second samples"
    )


async def _sample(
    admin: AIOKafkaAdminClient, group: str, topic: str, actions: str, want: int, limit: float
) -> Drain:
    """Sample until `want` records are on `actions`, or until `limit` (monotonic)."""
    drain = Drain()
    last = await admin.list_consumer_group_offsets(group)
    while time.monotonic() < limit:
        await asyncio.sleep(0.5)
        drain.lags.append(await group_lag(admin, group, topic))
        now = await admin.list_consumer_group_offsets(group)
        drain.samples += 1
        drain.moved += now != last
        last = now
        if await _end(actions) >= want:
            drain.done = datetime.now(UTC)
            break
    return drain


async def _end(topic: str) -> int:
    """The sum of `topic`'s end offsets."""
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])
    finally:
        await consumer.stop()
    return sum(ends.values())


async def _fired_at(topic: str, due: datetime) -> list[datetime]:
    """`fired_at` of the committed actions on `topic` whose deadline is `due`."""
    wanted = f'"deadline_at":"{format_time(due)}"'.encode()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=BOOTSTRAP, isolation_level="read_committed", max_poll_records=10_000
    )
    await consumer.start()
    fired: list[datetime] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)  # read_committed: the last stable offsets
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batch.values():
                for record in records:
                    if record.value is not None and wanted in record.value:
                        fired.append(parse_time(orjson.loads(record.value)["fired_at"]))
    finally:
        await consumer.stop()
    return fired


async def _alone(n: int, read_rate: float) -> None:
    """(e) by itself: fresh topics, one worker, the burst, everything deleted afterwards."""
    prefix = f"e{uuid.uuid4().hex[:8]}-"
    folder = Path(tempfile.mkdtemp(prefix="bench-burst-"))
    policy = write_policy(folder)
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await create_topics(admin, load_topic_specs(partitions=PARTITIONS, prefix=prefix))
        worker = Worker(prefix, folder, policy)
        worker.start()
        try:
            await burst(admin, prefix, worker.app_id, n, 0, read_rate)
        finally:
            worker.stop()
    finally:
        await delete_topics_named(admin, prefix)
        await admin.close()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--burst", type=int, default=1_000_000, help="deadlines due at once")
    parser.add_argument(
        "--read-rate",
        type=float,
        default=6_000.0,
        help="the worker's events/s (times the deadline; ingestion meanwhile: a quarter of it)",
    )
    args = parser.parse_args()
    asyncio.run(_alone(args.burst, args.read_rate))
    return 0


if __name__ == "__main__":
    sys.exit(main())
