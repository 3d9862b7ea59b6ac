"""Run `aftersale worker` as a real process against the local broker, feed it, read its output."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import EllipsisType
from typing import Any, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from streams.contract.times import format_time
from streams.contract.topics import load_topic_specs
from streams.live.admin import create_topics
from streams.rules.policy import load_policy
from streams.tools.replay import replay
from streams.tools.summary import Summary
from tests.integration.endpoints import BOOTSTRAP

PARTITIONS = 3
INPUTS = ("order-events", "aftersale-events")
OUTPUTS = ("aftersale-actions", "aftersale-notifications", "aftersale-deadletter")

T = TypeVar("T")
#: The records of the three output topics, by topic name without the prefix.
Outputs = dict[str, list[Any]]
FAST_POLICY = (
    "deadlines: {merchant_review: 3, buyer_return: 4, merchant_receipt: 4}\n"
    "reminders: {merchant_review: [1.5], buyer_return: [1], merchant_receipt: [1]}\n"
)


@dataclass
class Env:
    """Unique contract topics (by prefix), an app id and the fast policy for one test."""

    prefix: str
    app_id: str
    policy: Path
    folder: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def create_contract_topics(prefix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await create_topics(admin, load_topic_specs(partitions=PARTITIONS, prefix=prefix))
    finally:
        await admin.close()


@dataclass
class WorkerProcess:
    """One `aftersale worker` process with its own data folder and web port."""

    prefix: str
    app_id: str
    policy: Path
    folder: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def log(self) -> Path:
        return self.folder / f"worker-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        env = dict(os.environ)
        env.update(
            AFTERSALE_KAFKA_BOOTSTRAP=BOOTSTRAP,
            AFTERSALE_TOPIC_PREFIX=self.prefix,
            AFTERSALE_APP_ID=self.app_id,
            AFTERSALE_PARTITIONS=str(PARTITIONS),
            AFTERSALE_POLICY_FILE=str(self.policy),
            AFTERSALE_DATA_DIR=str(self.folder / "data"),
            AFTERSALE_WEB_PORT=str(free_port()),
            AFTERSALE_TICK_INTERVAL="0.1",
            # static membership: each worker of a test its own id (one host runs them all)
            AFTERSALE_INSTANCE_ID=f"{self.app_id}-{self.folder.name}",
        )
        env.update(self.extra_env)
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streams.tools.cli", "worker"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def wait_ready(self, within: float = 90.0) -> None:
        await self.wait_logged(b"Worker ready", within)

    async def wait_logged(self, text: bytes, within: float = 90.0) -> None:
        """Wait until the current log holds `text` (failing if the process exits first)."""

        async def logged() -> bool:
            return text in self.log.read_bytes()

        await wait_for(logged, f"{self.log} to say {text.decode()!r}", within, workers=[self])

    def exited(self) -> int | None:
        """The exit code of the current process, None while it runs (or is stopped)."""
        assert self.process is not None
        return self.process.poll()

    def send_signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def errors(self) -> list[str]:
        text = self.log.read_text(errors="replace")
        return [line for line in text.splitlines() if "Traceback" in line or "[ERROR]" in line]


@dataclass
class Feeder:
    """Produces records to the prefixed input topics and remembers them in order."""

    prefix: str
    #: Write each record in its own transaction, as an upstream service with an outbox would.
    transactional: bool = False
    producer: AIOKafkaProducer | None = None
    sent: list[bytes] = field(default_factory=list)
    ids: int = 0

    async def __aenter__(self) -> Feeder:
        tid = f"{self.prefix}feeder-tx" if self.transactional else None
        self.producer = AIOKafkaProducer(
            bootstrap_servers=BOOTSTRAP, linger_ms=0, transactional_id=tid
        )
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.producer is not None
        await self.producer.stop()

    async def send(
        self, event_type: str, order_id: str, case_id: str | None = None, /,
        at: datetime | None = None, key: bytes | EllipsisType | None = ..., **fields: Any,
    ) -> dict[str, Any]:  # fmt: skip
        """An event stamped now (or `at`), keyed by its order_id (or by `key`, None: no key)."""
        self.ids += 1
        body: dict[str, Any] = {
            "event_id": f"{self.prefix}e{self.ids}",
            "type": event_type,
            "order_id": order_id,
            "occurred_at": format_time(at or datetime.now(UTC)),
        }
        if case_id is not None:
            body["case_id"] = case_id
        body.update(fields)
        await self.raw(event_type, orjson.dumps(body), order_id.encode() if key is ... else key)
        return body

    async def raw(self, kind: str, value: bytes | None, key: bytes | None) -> None:
        assert self.producer is not None
        topic = self.prefix + ("order-events" if kind.startswith("order.") else "aftersale-events")
        if self.transactional:
            async with self.producer.transaction():
                await self.producer.send_and_wait(topic, value, key=key)
        else:
            await self.producer.send_and_wait(topic, value, key=key)
        if value is not None:  # a tombstone has no line in replay's input
            self.sent.append(value)

    async def request(self, order_id: str, case_id: str, kind: str = "return_refund",
                      at: datetime | None = None,
                      key: bytes | EllipsisType | None = ...) -> dict[str, Any]:  # fmt: skip
        return await self.send(
            "aftersale.requested", order_id, case_id, at=at, key=key, kind=kind, reason="quality",
            amount=5990, merchant_id="m-1", buyer_id="b-1",
        )  # fmt: skip


async def read_outputs(
    prefix: str, settle: float = 3.0, limit: float = 60.0, keys: bool = False
) -> dict[str, list[Any]]:
    """Every committed record of the three output topics, read until nothing new for `settle` s
    (with `keys`, each as a pair of its key and its value)."""
    consumer = AIOKafkaConsumer(
        *(prefix + t for t in OUTPUTS),
        bootstrap_servers=BOOTSTRAP,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    await consumer.start()
    out: dict[str, list[Any]] = {t: [] for t in OUTPUTS}
    try:
        quiet_since = time.monotonic()
        start = time.monotonic()
        while time.monotonic() - quiet_since < settle and time.monotonic() - start < limit:
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                for record in records:
                    value = orjson.loads(record.value)
                    out[tp.topic.removeprefix(prefix)].append(
                        (record.key, value) if keys else value
                    )
                    quiet_since = time.monotonic()
    finally:
        await consumer.stop()
    return out


async def wait_for(
    check: Callable[[], Awaitable[T | None]],
    what: str | Callable[[], str],
    within: float,
    *,
    workers: Iterable[WorkerProcess] = (),
    every: float = 0.2,
) -> T:
    """Await `check()` every `every` s until it answers something true; return that answer.

    After `within` s, or as soon as one of `workers` has exited, fail with an AssertionError
    that says what was awaited (`what`, or what it answers when called at that moment) and
    shows the log tail of each of `workers`.
    """
    watched = list(workers)
    deadline = time.monotonic() + within
    while True:
        answer = await check()
        if answer:
            return answer
        gone = [w for w in watched if w.exited() is not None]
        if gone or time.monotonic() >= deadline:
            said = what() if callable(what) else what
            why = f"a worker exited (code {gone[0].exited()})" if gone else f"{within:g} s passed"
            tails = "".join(f"\n--- {w.log} (last lines) ---\n{w.tail()}" for w in watched)
            raise AssertionError(f"{why} while waiting for {said}{tails}")
        await asyncio.sleep(every)


def brief(value: object, limit: int = 1500) -> str:
    """`repr(value)`, cut to `limit` characters for an error message."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class TopicReader:
    """A read_committed consumer of `topics` from their start, outside any group, keeping
    every record it has read, in offset order per partition, by topic."""

    def __init__(self, *topics: str) -> None:
        self.consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=BOOTSTRAP,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            enable_auto_commit=False,
        )
        self.records: dict[str, list[tuple[bytes | None, bytes | None]]] = {t: [] for t in topics}

    async def __aenter__(self) -> TopicReader:
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def poll(self, wait: float = 0.2) -> None:
        """Read what has arrived, waiting at most `wait` s for something new."""
        batch = await self.consumer.getmany(timeout_ms=int(wait * 1000))
        for tp, records in batch.items():
            self.records[tp.topic].extend((r.key, r.value) for r in records)


async def wait_for_outputs(
    prefix: str,
    missing: Callable[[Outputs], object],
    what: str,
    *,
    workers: Iterable[WorkerProcess] = (),
    within: float = 90.0,
) -> Outputs:
    """Read the committed output records until `missing(outputs)` answers something false
    (nothing expected is missing any more); return what was read.

    After `within` s the AssertionError names `what`, shows what `missing` still answers and how
    many records each output topic held, and the workers' log tails.
    """
    out: Outputs = {t: [] for t in OUTPUTS}

    async with TopicReader(*(prefix + t for t in OUTPUTS)) as reader:

        async def nothing_missing() -> bool:
            await reader.poll()
            for topic in OUTPUTS:
                values = reader.records[prefix + topic]
                out[topic].extend(orjson.loads(v or b"null") for _, v in values[len(out[topic]) :])
            return not missing(out)

        def described() -> str:
            held = ", ".join(f"{len(out[t])} {t}" for t in OUTPUTS)
            return f"{what}; still missing {brief(missing(out))} (the topics held {held})"

        await wait_for(nothing_missing, described, within, workers=workers, every=0)
    return out


async def outputs_once_there(
    prefix: str,
    missing: Callable[[Outputs], object],
    what: str,
    *,
    workers: Iterable[WorkerProcess] = (),
    within: float = 90.0,
    settle: float = 3.0,
    keys: bool = False,
) -> Outputs:
    """Wait as `wait_for_outputs` does, then read every output record once more from the
    start, until nothing new for `settle` s: a duplicate or an unexpected record written
    meanwhile shows in the answer (with `keys`, each record as a pair of its key and value)."""
    await wait_for_outputs(prefix, missing, what, workers=workers, within=within)
    return await read_outputs(prefix, settle=settle, keys=keys)


def not_yet_in(
    expected: Mapping[str, Iterable[Hashable]], seen: Mapping[str, Iterable[Hashable]]
) -> dict[str, list[Hashable]]:
    """What of `expected` (by kind, counting repeats) `seen` does not hold yet; empty: all."""
    gaps = {kind: Counter(items) - Counter(seen.get(kind, ())) for kind, items in expected.items()}
    return {kind: sorted(gap.elements(), key=repr) for kind, gap in gaps.items() if gap}


async def wait_caught_up(
    prefix: str,
    group: str,
    *,
    workers: Iterable[WorkerProcess] = (),
    within: float = 60.0,
) -> None:
    """Wait until consumer group `group` (the worker's app id) has committed, on every
    partition of both input topics, the end offset the partition has now: every record
    written so far has been processed, its consequences committed with it (exactly_once).

    For input written without transactions (`Feeder` by default): after a transactional
    write the end offset is one past the last record (the commit marker).
    """
    tps = [TopicPartition(prefix + t, p) for t in INPUTS for p in range(PARTITIONS)]
    reader = AIOKafkaConsumer(
        bootstrap_servers=BOOTSTRAP, isolation_level="read_committed", enable_auto_commit=False
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await reader.start()
    await admin.start()
    lag: dict[str, int] = {}
    try:
        ends: dict[TopicPartition, int] = await reader.end_offsets(tps)

        async def no_lag() -> bool:
            committed = await admin.list_consumer_group_offsets(group, partitions=tps)
            lag.clear()
            for tp, end in ends.items():
                at = committed[tp].offset if tp in committed else -1
                if max(at, 0) < end:
                    lag[f"{tp.topic}[{tp.partition}]"] = end - max(at, 0)
            return not lag

        await wait_for(
            no_lag,
            lambda: f"group {group} to commit the input end offsets (records behind: {lag})",
            within,
            workers=workers,
        )
    finally:
        await admin.close()
        await reader.stop()


async def group_assignment(
    admin: AIOKafkaAdminClient, group: str
) -> tuple[str, dict[str, set[TopicPartition]]]:
    """The state of consumer group `group` and each member's assigned partitions, decoded as
    the consumer protocol's assignment (faust's assignor writes one, with its own user data).
    ("", {}) while the broker cannot describe the group (its coordinator is moving)."""
    try:
        responses = await admin.describe_consumer_groups([group])
    except KafkaError:
        return "", {}
    members: dict[str, set[TopicPartition]] = {}
    state = ""
    for response in responses:
        for (
            error_code,
            group_id,
            group_state,
            _protocol_type,
            _protocol,
            group_members,
            *_,
        ) in response.groups:
            if group_id != group or error_code != 0:
                continue
            state = group_state
            for member_id, _client_id, _host, _metadata, assignment in group_members:
                members[member_id] = (
                    set(ConsumerProtocolMemberAssignment.decode(assignment).partitions())
                    if assignment
                    else set()
                )
    return state, members


async def split_between_two(
    env: Env, workers: list[WorkerProcess], within: float = 60.0
) -> dict[str, set[TopicPartition]]:
    """Wait until the workers' consumer group (the app id) is stable with two members, each
    assigned partitions of the input topics; answer each member's input partitions."""
    inputs = {env.prefix + t for t in INPUTS}
    seen: list[object] = []
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:

        async def split() -> dict[str, set[TopicPartition]] | None:
            state, members = await group_assignment(admin, env.app_id)
            held = {m: {tp for tp in tps if tp.topic in inputs} for m, tps in members.items()}
            seen[:] = [state, held]
            ok = state == "Stable" and len(held) == 2 and all(held.values())
            return held if ok else None

        return await wait_for(
            split,
            lambda: f"group {env.app_id} stable, 2 members with input partitions each: {seen}",
            within,
            workers=workers,
        )
    finally:
        await admin.close()


def replay_of(
    sent: list[bytes], policy: Path, folder: Path, until: datetime
) -> dict[str, list[Any]]:
    """What `aftersale replay` answers for the same record values in the same order."""
    events = folder / "sent.jsonl"
    events.write_bytes(b"".join(value.replace(b"\n", b" ") + b"\n" for value in sent))
    out = folder / "replay"
    summary: Summary = replay(events, out, load_policy(policy), until)
    assert summary.read == len(sent)
    files = {"aftersale-actions": "actions", "aftersale-notifications": "notifications",
             "aftersale-deadletter": "deadletter"}  # fmt: skip
    return {
        topic: [orjson.loads(line) for line in (out / f"{name}.jsonl").read_bytes().splitlines()]
        for topic, name in files.items()
    }


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)
