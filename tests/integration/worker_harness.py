"""Run `aftersale worker` as a real process against the local broker, feed it, read its output."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import EllipsisType
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from streams.contract.times import format_time
from streams.contract.topics import load_topic_specs
from streams.live.admin import create_topics
from streams.rules.policy import load_policy
from streams.tools.replay import replay
from streams.tools.summary import Summary
from tests.integration.endpoints import BOOTSTRAP

PARTITIONS = 3
OUTPUTS = ("aftersale-actions", "aftersale-notifications", "aftersale-deadletter")
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
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.tail()}")
            if b"Worker ready" in self.log.read_bytes():
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"worker not ready after {within} s:\n{self.tail()}")

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
