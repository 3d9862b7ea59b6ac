"""What bench/stream.py's phases share: the local broker, the bench's requests, a paced
producer, worker processes, and the consumer group's lag."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import confluent_kafka
import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from streams.contract.times import format_time

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
PARTITIONS = 6
REVIEW_S = 600  # merchant_review in this bench: requests back-dated to put deadlines anywhere


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def request(prefix: str, n: int, at: datetime) -> tuple[bytes, bytes]:
    order = f"{prefix}o-{n}"
    body = {
        "event_id": f"e-{n}", "type": "aftersale.requested", "order_id": order,
        "case_id": f"c-{n}", "occurred_at": format_time(at), "kind": "refund_only",
        "reason": "quality", "amount": 990, "merchant_id": f"m-{n % 500}", "buyer_id": f"b-{n}",
    }  # fmt: skip
    return order.encode(), orjson.dumps(body)


#: A paced producer sleeps only once it is this far ahead, sending in bursts of at most this
#: much of its rate. Sleeping before every record took the bench's process from about 20% to
#: 30% of a core at 11,300 records/s: CPU the worker under test shares with it here.
PACE_S = 0.005


async def send_all(records: Iterable[tuple[str, bytes | None, bytes]], rate: float = 0.0) -> None:
    """Send (topic, key, value) records, as fast as possible or at `rate` records/s.

    With librdkafka (confluent-kafka), whose threads batch and send outside the GIL: at
    11,300 records/s it takes 7.5-10% of a core, aiokafka's producer took 18-20%, of the two
    cores this machine's worker, broker and bench share. Keys are partitioned with murmur2,
    as by Kafka's Java client, aiokafka and the contract's producers.
    """
    failed: list[str] = []

    def delivered(error: Any, message: Any) -> None:
        if error is not None:
            failed.append(str(error))

    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "linger.ms": 20,
            "partitioner": "murmur2_random",
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    start = time.monotonic()
    for i, (topic, key, value) in enumerate(records):
        if rate:
            ahead = start + i / rate - time.monotonic()
            if ahead > PACE_S:
                await asyncio.sleep(ahead)
        elif not i % 20_000:
            await asyncio.sleep(0)  # let the rest of the bench run
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=delivered)
                break
            except BufferError:  # its queue is full: let it send
                producer.poll(0)
                await asyncio.sleep(0.01)
        if not i % 1000:
            producer.poll(0)  # delivery reports
    unsent = await asyncio.to_thread(producer.flush, 120)  # in C, without the GIL
    if unsent:
        failed.append(f"{unsent} still queued after 120 s")
    if failed:
        raise SystemExit(f"{len(failed)} records not delivered, first: {failed[0]}")


async def produce(prefix: str, records: Iterable[tuple[bytes, bytes]], rate: float = 0.0) -> None:
    """Send (key, value) records to the after-sale topic."""
    topic = prefix + "aftersale-events"
    await send_all(((topic, key, value) for key, value in records), rate)


async def group_lag(admin: AIOKafkaAdminClient, group: str, *topics: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for topic in topics for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    committed = await admin.list_consumer_group_offsets(group, partitions=tps)
    return sum(ends[tp] - max(0, committed[tp].offset if tp in committed else 0) for tp in tps)


class Worker:
    #: The worker's log level (its log: the run's folder, `<name>/worker.log`, with `--keep`).
    log_level = "warning"

    def __init__(
        self, prefix: str, folder: Path, policy: Path, name: str = "app", group: str = ""
    ) -> None:
        """A worker with its own state folder and static member id (`name`), in the consumer
        group `group` (default: its own, named after it)."""
        self.prefix, self.folder, self.policy = prefix, folder / name, policy
        self.folder.mkdir(exist_ok=True)
        self.app_id = f"{prefix}{group or name}"
        self.instance_id = f"{prefix}{name}"
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def metric(self, name: str) -> dict[str, float]:
        """The samples of one metric family on the worker's /metrics, by their labels."""
        import urllib.request

        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as page:
            text = page.read().decode()
        return {
            f"{sample.name}{sorted(sample.labels.items())}": sample.value
            for family in text_string_to_metric_families(text)
            if family.name == name
            for sample in family.samples
        }

    def start(self) -> float:
        env = dict(os.environ)
        env.update(
            AFTERSALE_KAFKA_BOOTSTRAP=BOOTSTRAP, AFTERSALE_TOPIC_PREFIX=self.prefix,
            AFTERSALE_APP_ID=self.app_id, AFTERSALE_PARTITIONS=str(PARTITIONS),
            AFTERSALE_POLICY_FILE=str(self.policy), AFTERSALE_DATA_DIR=str(self.folder / "data"),
            AFTERSALE_WEB_PORT=str(self.port), AFTERSALE_INSTANCE_ID=self.instance_id,
        )  # fmt: skip
        log = (self.folder / "worker.log").open("ab")
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.tools.cli", "worker", "--loglevel", self.log_level],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        return started

    def rss_mb(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def cpu_seconds(self) -> float:
        """CPU time the worker process has used (all its threads)."""
        assert self.proc is not None
        return _cpu_seconds(self.proc.pid)

    def kill(self) -> None:
        """kill -9: no commit, no leave, the local store as the crash left it."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def wait_drained(admin: AIOKafkaAdminClient, group: str, limit: float, *topics: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if await group_lag(admin, group, *topics) == 0:
            return time.monotonic()
        await asyncio.sleep(0.25)
    raise SystemExit(f"worker did not catch up within {limit:.0f} s")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def broker_cpu_seconds() -> float:
    """CPU time of the local stack's broker (nan when its pid file is not there)."""
    stack = os.environ.get("STACK_DIR") or Path(__file__).resolve().parents[1] / ".stack"
    pid_file = Path(stack) / "run" / "kafka.pid"
    try:
        return _cpu_seconds(int(pid_file.read_text()))
    except (OSError, ValueError):
        return float("nan")


def write_policy(folder: Path) -> Path:
    """The bench's policy file in `folder`: merchant_review REVIEW_S, no reminders."""
    policy = folder / "policy.yaml"
    policy.write_text(
        f"deadlines: {{merchant_review: {REVIEW_S}}}\nreminders: {{merchant_review: []}}\n"
    )
    return policy
