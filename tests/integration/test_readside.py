"""`aftersale project` against the real Kafka and Redis: Redis ends up as the projection of the
committed status records, exactly once, through aborted transactions, a Redis that is killed
and restarted, and projectors killed with SIGKILL.

The feed is `aftersale replay --status` of `aftersale simulate` output (with an order
retention, so orders are forgotten too), produced keyed by order_id into `<app id>-status` in
Kafka transactions. Its projection (`Projection`, with the offsets each record got) is what
Redis must hold. The process helpers here serve test_api.py too.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.contract.times import parse_time
from streams.errors import ContractError
from streams.live.admin import until_listed
from streams.readside.projection import Delivered, Projection, StatusRecord, decode_record
from streams.readside.redis_store import RedisStore, StoreUnavailable
from streams.rules.policy import Policy
from streams.tools.replay import STATUS_FILE, replay
from streams.tools.simulate import generate
from tests.integration.endpoints import BOOTSTRAP, REDIS_URL
from tests.integration.worker_harness import free_port, wait_for

PARTITIONS = 3


# --------------------------------------------------------------------------- helpers


def status_feed(folder: Path, orders: int, seed: int = 7) -> list[bytes]:
    """The status records of a simulated run (replay --status), one JSON value each."""
    events = folder / f"events-{seed}.jsonl"
    with events.open("wb") as out:
        for line in generate(orders, seed):
            out.write(line + b"\n")
    # orders idle for 12 days are forgotten before the end: order_forgotten records too
    policy = Policy(order_retention=timedelta(days=12))
    until = parse_time("2026-11-25T00:00:00Z")
    replay(events, folder / f"replay-{seed}", policy, until, status=True)
    return (folder / f"replay-{seed}" / STATUS_FILE).read_bytes().splitlines()


@dataclass
class StatusTopic:
    """`<app id>-status`, written in transactions; remembers where each committed record went
    and projects it, as the projector must."""

    app_id: str
    producer: AIOKafkaProducer | None = None
    projection: Projection = field(default_factory=Projection)
    committed: int = 0

    @property
    def name(self) -> str:
        return f"{self.app_id}-status"

    async def create(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(self.name, PARTITIONS, 1)])
            await until_listed(admin, {self.name})
        finally:
            await admin.close()

    async def __aenter__(self) -> StatusTopic:
        self.producer = AIOKafkaProducer(
            bootstrap_servers=BOOTSTRAP, transactional_id=f"{self.app_id}-feed", linger_ms=5
        )
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.producer is not None
        await self.producer.stop()

    async def write(self, lines: list[bytes], commit: bool = True) -> None:
        """One transaction of `lines` (keyed by their order_id), committed or aborted."""
        producer = self.producer
        assert producer is not None
        await producer.begin_transaction()
        futures = [
            await producer.send(self.name, line, key=_key(line)) for line in lines
        ]  # fmt: skip
        sent = [await f for f in futures]
        if not commit:
            await producer.abort_transaction()
            return
        await producer.commit_transaction()
        for line, meta in zip(lines, sent, strict=True):
            try:
                record = decode_record(line)
            except ContractError:
                offsets = self.projection.offsets
                offsets[meta.partition] = max(offsets.get(meta.partition, -1), meta.offset)
                continue
            assert self.projection.apply(record, meta.partition, meta.offset)
        self.committed += len(lines)

    async def write_paced(
        self, lines: list[bytes], per_transaction: int = 100, pause: float = 0.03
    ) -> None:
        for start in range(0, len(lines), per_transaction):
            await self.write(lines[start : start + per_transaction])
            await asyncio.sleep(pause)


def _key(line: bytes) -> bytes:
    try:
        order_id: str = orjson.loads(line)["order_id"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return b"?"
    return order_id.encode()


@dataclass
class ProjectorProcess:
    """One `aftersale project` process (its log per start in `folder`)."""

    app_id: str
    redis_url: str
    folder: Path
    name: str = "p"
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def log(self) -> Path:
        return self.folder / f"{self.name}-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        env = dict(os.environ)
        env.update(
            AFTERSALE_KAFKA_BOOTSTRAP=BOOTSTRAP,
            AFTERSALE_APP_ID=self.app_id,
            AFTERSALE_REDIS_URL=self.redis_url,
            AFTERSALE_PROJECTOR_BATCH="50",
            AFTERSALE_PROJECTOR_RETRY_MAX="0.5",
            AFTERSALE_REDIS_TIMEOUT="2",
        )
        env.update(self.extra_env)
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streams.tools.cli", "project"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def logs(self) -> str:
        return "\n".join(
            (self.folder / f"{self.name}-{n}.log").read_text(errors="replace")
            for n in range(1, self.starts + 1)
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 30.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else "(no log)"
        return f"--- {self.log.name}\n" + "\n".join(text.splitlines()[-lines:])


@dataclass
class RedisServer:
    """A redis-server of the test's own (not the stack's), persisting every write (AOF with
    fsync always), so that a SIGKILL loses nothing it acknowledged."""

    folder: Path
    password: str = ""
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def spawn(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / "redis.log").open("ab") as out:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                 "--dir", str(self.folder), "--appendonly", "yes", "--appendfsync", "always",
                 "--save", "", *(("--requirepass", self.password) if self.password else ())],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    async def start(self) -> None:
        """Start it and wait until it answers."""
        self.spawn()
        client = aioredis.from_url(self.url)

        async def answers() -> bool:
            try:
                return bool(await client.ping())
            except aioredis.RedisError:
                return False

        try:
            await wait_for(answers, f"redis-server on port {self.port}", 15.0, every=0.05)
        finally:
            await client.aclose()

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
def projectors(unique: str, tmp_path: Path) -> Iterator[Callable[..., ProjectorProcess]]:
    made: list[ProjectorProcess] = []

    def make(redis_url: str = REDIS_URL, name: str = "p") -> ProjectorProcess:
        projector = ProjectorProcess(unique, redis_url, tmp_path, name)
        made.append(projector)
        return projector

    yield make
    for projector in made:
        if projector.alive():
            projector.kill(signal.SIGKILL)


@pytest.fixture
async def stack_store(unique: str) -> AsyncIterator[RedisStore]:
    """The read side's keys of this test in the stack's Redis, deleted afterwards."""
    client = aioredis.from_url(REDIS_URL)
    store = RedisStore(client, f"{unique}:", f"{unique}-status")
    try:
        yield store
    finally:
        await store.delete_all()
        await client.aclose()


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    await server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def status(unique: str) -> AsyncIterator[StatusTopic]:
    status = StatusTopic(unique)
    async with status:
        yield status
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.delete_topics([status.name])
    finally:
        await admin.close()


async def caught_up(
    store: RedisStore, topic: StatusTopic, *processes: ProjectorProcess, within: float = 90.0
) -> None:
    """Wait until Redis holds the last committed offset of every partition."""
    expected = topic.projection.offsets

    async def done() -> bool:
        try:
            return await store.stored_offsets(range(PARTITIONS)) == {
                p: expected.get(p, -1) for p in range(PARTITIONS)
            }
        except Exception:  # Redis restarting: not yet
            return False

    def what() -> str:
        tails = "\n".join(p.tail() for p in processes)
        return f"Redis to hold the offsets {expected}\n{tails}"

    await wait_for(done, what, within)


def by_order(feed: list[StatusRecord], partitions: int) -> list[Delivered]:
    """The records placed on `partitions` by order (as keys place them), in feed order, with
    each partition's offsets."""
    next_offset = dict.fromkeys(range(partitions), 0)
    out = []
    for record in feed:
        p = zlib.crc32(record.order_id.encode()) % partitions
        out.append(Delivered(p, next_offset[p], record))
        next_offset[p] += 1
    return out


async def logged(projector: ProjectorProcess, text: str, within: float = 30.0) -> None:
    """Wait until the projector's current run has logged `text`."""

    async def said() -> bool:
        return projector.log.exists() and text in projector.log.read_text(errors="replace")

    await wait_for(said, lambda: f"the projector to log {text!r}\n{projector.tail()}", within)


async def assert_redis_is_the_projection(store: RedisStore, topic: StatusTopic) -> None:
    snapshot = await store.dump()
    expected = topic.projection.snapshot()
    assert snapshot.offsets == expected.offsets
    assert snapshot.counts == expected.counts
    missing = expected.orders.keys() - snapshot.orders.keys()
    extra = snapshot.orders.keys() - expected.orders.keys()
    assert not missing, sorted(missing)[:5]
    assert not extra, sorted(extra)[:5]
    differ = [o for o in expected.orders if expected.orders[o] != snapshot.orders[o]]
    assert not differ, (differ[:3], [snapshot.orders[o] for o in differ[:1]])
    assert snapshot == expected


# --------------------------------------------------------------------------- tests


async def test_redis_is_the_projection_of_the_committed_records(
    status: StatusTopic,
    stack_store: RedisStore,
    projectors: Callable[..., ProjectorProcess],
    tmp_path: Path,
) -> None:
    feed = status_feed(tmp_path, orders=600)
    kinds = {orjson.loads(line)["type"] for line in feed}
    assert kinds == {"order_paid", "case", "order_forgotten"}
    projector = projectors()
    projector.start()  # before its status exists: it waits for it
    await logged(projector, "waiting for topic")
    await status.create()
    half = len(feed) // 2
    await status.write(feed[:half])
    # an aborted transaction: a read_committed consumer never sees it
    aborted = [
        orjson.dumps({"type": "order_paid", "order_id": f"x-{n}", "merchant_id": "m-aborted",
                      "at": "2026-11-02T00:00:00Z", "amount": 1})
        for n in range(20)
    ] + [orjson.dumps({"type": "order_forgotten", "order_id": orjson.loads(feed[0])["order_id"],
                       "at": "2026-11-02T00:00:00Z"})]  # fmt: skip
    await status.write(aborted, commit=False)
    # a record that is no status record is logged and skipped, never stops the projector
    await status.write([b"not a status record", *feed[half:]])
    await caught_up(stack_store, status, projector)
    await assert_redis_is_the_projection(stack_store, status)
    assert projector.alive()
    assert projector.kill(signal.SIGTERM) == 0
    logs = projector.logs()
    assert "skipping an undecodable record" in logs
    assert "projector stopped" in logs
    assert f"{len(feed)} records applied" in logs


async def test_redis_killed_and_restarted_mid_run(
    status: StatusTopic,
    own_redis: RedisServer,
    projectors: Callable[..., ProjectorProcess],
    tmp_path: Path,
) -> None:
    feed = status_feed(tmp_path, orders=1500, seed=11)
    await status.create()
    projector = projectors(own_redis.url)
    projector.start()
    client = aioredis.from_url(own_redis.url)
    store = RedisStore(client, f"{status.app_id}:", status.name)
    try:
        third = len(feed) // 3
        await status.write_paced(feed[:third])

        async def applied_some() -> bool:
            return sum(o + 1 for o in (await store.stored_offsets(range(PARTITIONS))).values()) > 0

        await wait_for(applied_some, lambda: projector.tail(), 30.0)
        own_redis.kill()
        await status.write_paced(feed[third : 2 * third])  # a backlog while Redis is down
        await logged(projector, "is unavailable")
        await asyncio.sleep(1.5)  # a few retries
        assert projector.alive(), projector.tail()
        await own_redis.start()  # the same data folder: its AOF is read back
        await status.write_paced(feed[2 * third :])
        await caught_up(store, status, projector)
        await assert_redis_is_the_projection(store, status)
        assert "is back after" in projector.logs()
        assert projector.kill(signal.SIGTERM) == 0
    finally:
        await client.aclose()


async def test_projectors_killed_mid_run_apply_each_record_once(
    status: StatusTopic,
    stack_store: RedisStore,
    projectors: Callable[..., ProjectorProcess],
    tmp_path: Path,
) -> None:
    feed = status_feed(tmp_path, orders=1500, seed=13)
    await status.create()
    first, second = projectors(name="p1"), projectors(name="p2")
    first.start()
    second.start()
    for projector in (first, second):
        await logged(projector, "resuming after the offsets in Redis")

    async def applied(share: float) -> None:
        async def enough() -> bool:
            offsets = await stack_store.stored_offsets(range(PARTITIONS))
            return sum(o + 1 for o in offsets.values()) >= share * len(feed)

        await wait_for(enough, lambda: f"{share:.0%} applied\n{first.tail()}\n{second.tail()}", 60)

    # the feed flows all along, 100 records every 50 ms; projectors die with SIGKILL mid-flow
    producing = asyncio.create_task(status.write_paced(feed, pause=0.05))
    await applied(0.1)
    first.kill(signal.SIGKILL)  # its partitions go to the other when its session expires
    await applied(0.3)
    second.kill(signal.SIGKILL)  # nobody left
    second.start()  # resumes every partition from the offsets in Redis
    await applied(0.5)
    first.start()  # and a rebalance between the two
    await producing
    await caught_up(stack_store, status, first, second, within=120.0)
    await assert_redis_is_the_projection(stack_store, status)
    await logged(first, "resuming after the offsets in Redis")  # it got some partitions back
    for projector in (first, second):
        assert projector.kill(signal.SIGTERM) == 0, projector.tail()


async def test_two_projectors_racing_on_a_partition_apply_each_record_once(
    stack_store: RedisStore, tmp_path: Path
) -> None:
    # what a projector that lost its partitions in a rebalance (and does not know yet) and
    # their new owner do: apply the same records at the same time
    feed = [decode_record(line) for line in status_feed(tmp_path, orders=200, seed=17)]
    deliveries = by_order(feed, PARTITIONS)
    expected = Projection()
    for d in deliveries:
        assert d.record is not None
        expected.apply(d.record, d.partition, d.offset)
    other_client = aioredis.from_url(REDIS_URL)
    other = RedisStore(other_client, stack_store.keys.prefix, stack_store.topic)
    conflicts = applied = 0
    try:
        for start in range(0, len(deliveries), 60):
            batch = deliveries[start : start + 60]
            # the zombie's batch overlaps the owner's: same records, and some more
            results = await asyncio.gather(
                stack_store.apply_batch(batch, {}),
                other.apply_batch(deliveries[max(0, start - 30) : start + 60], {}),
            )
            conflicts += sum(r.conflicts for r in results)
            applied += sum(r.applied for r in results)
    finally:
        await other_client.aclose()
    assert applied == len(deliveries)
    assert conflicts > 0  # they did race: WATCH made the loser decide again
    snapshot = await stack_store.dump()
    assert snapshot == expected.snapshot()


async def test_a_partition_that_redis_lost_is_read_again(
    stack_store: RedisStore, tmp_path: Path
) -> None:
    feed = [decode_record(line) for line in status_feed(tmp_path, orders=50, seed=19)]
    first = [Delivered(0, n, r) for n, r in enumerate(feed[:40])]
    result = await stack_store.apply_batch(first, {})
    assert (result.applied, result.offsets, result.rewound) == (40, {0: 39}, {})
    # Redis restarted from an older snapshot: the offset went back (and, there, its data)
    await stack_store.client.set(stack_store.keys.offset(stack_store.topic, 0), 19)
    later = [Delivered(0, 40 + n, r) for n, r in enumerate(feed[40:60])]
    result = await stack_store.apply_batch(later, {0: 39})
    assert (result.applied, result.offsets, result.rewound) == (0, {0: 19}, {0: 19})
    # read again after offset 19: the older records are applied once more, the newer ones once
    again = await stack_store.apply_batch(first[20:] + later, {0: 19})
    assert (again.applied, again.offsets) == (40, {0: 59})


async def test_a_batch_with_a_partition_applied_before_applies_the_rest(
    stack_store: RedisStore, tmp_path: Path
) -> None:
    feed = [decode_record(line) for line in status_feed(tmp_path, orders=60, seed=29)]
    deliveries = by_order(feed, 2)
    expected = Projection()
    for d in deliveries:
        assert d.record is not None
        expected.apply(d.record, d.partition, d.offset)
    zero = [d for d in deliveries if d.partition == 0]
    one = [d for d in deliveries if d.partition == 1]
    await stack_store.apply_batch(zero, {})
    # partition 0 (first in the batch) all applied before, partition 1 all new
    result = await stack_store.apply_batch(zero + one, {0: zero[-1].offset})
    assert (result.applied, result.skipped) == (len(one), len(zero))
    assert await stack_store.dump() == expected.snapshot()


async def test_a_key_of_another_type_fails_the_batch_with_nothing_written(
    stack_store: RedisStore,
) -> None:
    paid = [
        decode_record(
            orjson.dumps({"type": "order_paid", "order_id": f"o-{n}", "merchant_id": f"m-{n}",
                          "at": "2026-11-01T00:00:00Z", "amount": 1})
        )
        for n in range(3)
    ]  # fmt: skip
    batch = [Delivered(0, n, r) for n, r in enumerate(paid)]
    client, keys = stack_store.client, stack_store.keys
    for foreign in (keys.merchant("m-2"), keys.order("o-1")):
        await client.set(foreign, "not ours")
        with pytest.raises(StoreUnavailable, match="WRONGTYPE"):
            await stack_store.apply_batch(batch, {})
        assert await client.exists(keys.order("o-0"), keys.merchant("m-0")) == 0
        assert await stack_store.stored_offsets([0]) == {0: -1}
        await client.delete(foreign)
    result = await stack_store.apply_batch(batch, {})
    assert result.applied == 3
