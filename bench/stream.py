"""The streaming worker on the real local broker, printed as figures and ratios.

    python bench/stream.py [--cases 1000000] [--throughput-events 200000]

(a) sustained end-to-end events/s of one worker, next to a plain aiokafka consume->produce
    loop over the same records, in the same run; each runs twice, interleaved, and the faster
    of each counts (targets: >= 10,000 events/s, >= 0.3 of the plain loop), and a faust
    agent that does nothing (bench/faust_probe.py), faust's own ceiling;
(b) firing lateness (fired_at - deadline_at, and until a read_committed consumer sees the action)
    p50/p99/p99.9 with --cases open cases while ingesting at half the sustained rate
    (targets: p99 <= 1 s, p99.9 <= 2 s, never early);
(c) restart-to-first-fire with those open cases, from local RocksDB state, after a clean stop
    (target <= 30 s) and after kill -9 (target <= 10 s);
(d) worker RSS per open case.
Needs the local stack (`make stack-up`). Topics are fresh per run (unique prefix) and deleted
afterwards, with the workers' state (--keep keeps both).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import confluent_kafka
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from streams.contract.times import format_time, parse_time
from streams.contract.topics import TopicSpec, load_topic_specs
from streams.live.admin import create_topics, delete_topics_named
from streams.tools.live_producer import route
from streams.tools.simulate import generate

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


def simulated_mix(events: int, start: datetime) -> list[bytes]:
    """About `events` records of `aftersale simulate` (orders, cases, bad input, retries),
    stamped from `start` on."""
    return list(generate(int(events / 4.35), seed=7, start=start))  # 4.35 records per order


async def produce_routed(prefix: str, lines: list[bytes]) -> None:
    """Send simulated records to the input topic and key each belongs to."""

    def routed(line: bytes) -> tuple[str, bytes | None, bytes]:
        topic, key, _ = route(line)
        return prefix + topic, key, line

    await send_all(map(routed, lines))


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


async def consume_all(
    admin: AIOKafkaAdminClient, worker: Worker, topic: str, n: int
) -> tuple[float, float]:
    """Start `worker` on `n` records waiting in `topic`: (its events/s, its RSS in MB at start)."""
    worker.start()
    base_rss = 0.0
    # the worker's first commit marks its start of consumption
    t0 = time.monotonic()
    while await group_lag(admin, worker.app_id, topic) == n:
        await asyncio.sleep(0.1)
        t0 = time.monotonic()
        base_rss = worker.rss_mb()
    t1 = await wait_drained(admin, worker.app_id, 3600, topic)
    return n / (t1 - t0), base_rss


async def wait_drained(admin: AIOKafkaAdminClient, group: str, limit: float, *topics: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if await group_lag(admin, group, *topics) == 0:
            return time.monotonic()
        await asyncio.sleep(0.25)
    raise SystemExit(f"worker did not catch up within {limit:.0f} s")


async def plain_loop(prefix: str, count: int, name: str) -> float:
    """events/s of a bare consume->produce loop over the same topic (no state, no checks)."""
    consumer = AIOKafkaConsumer(
        prefix + "aftersale-events", bootstrap_servers=BOOTSTRAP, group_id=f"{prefix}{name}",
        auto_offset_reset="earliest", max_poll_records=2000,
    )  # fmt: skip
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=5)
    await consumer.start()
    await producer.start()
    seen, start = 0, 0.0
    try:
        while seen < count:
            batch = await consumer.getmany(timeout_ms=1000, max_records=2000)
            for records in batch.values():
                if not start:
                    start = time.monotonic()
                for record in records:
                    await producer.send(prefix + "plain-sink", record.value, key=record.key)
                    seen += 1
        await producer.flush()
    finally:
        await consumer.stop()
        await producer.stop()
    return count / (time.monotonic() - start)


def faust_probe(topic: str, count: int, flags: list[str]) -> float:
    """events/s of a faust agent that does nothing, over the same records (bench/faust_probe)."""
    probe = Path(__file__).resolve().parent / "faust_probe.py"
    done = subprocess.run(
        [sys.executable, str(probe), topic, str(count), *flags],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    # faust writes terminal control codes to stdout too: find the result's JSON
    found = re.findall(r'\{"events_per_s": [0-9.e+-]+\}', done.stdout)
    if not found:
        raise SystemExit(f"faust probe printed no result:\n{done.stdout[-2000:]}")
    rate: float = orjson.loads(found[-1])["events_per_s"]
    return rate


async def lateness(
    prefix: str, since: datetime, seconds: float
) -> tuple[list[float], list[float], list[str]]:
    """(fired_at - deadline_at, seen - deadline_at) in seconds, for actions due after `since`,
    and a line per action: its deadline_at, fired_at and seen time (when lateness struck)."""
    consumer = AIOKafkaConsumer(
        prefix + "aftersale-actions", bootstrap_servers=BOOTSTRAP, auto_offset_reset="earliest",
        isolation_level="read_committed",
    )  # fmt: skip
    await consumer.start()
    fired, seen, lines = [], [], []
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            batch = await consumer.getmany(timeout_ms=500)
            now = datetime.now(UTC)
            for records in batch.values():
                for record in records:
                    action = orjson.loads(record.value)
                    due = parse_time(action["deadline_at"])
                    if due < since:
                        continue
                    fired.append((parse_time(action["fired_at"]) - due).total_seconds())
                    seen.append((now - due).total_seconds())
                    lines.append(f"{action['deadline_at']} {action['fired_at']} {format_time(now)}")
    finally:
        await consumer.stop()
    return fired, seen, lines


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def main_async(args: argparse.Namespace) -> None:
    prefix = f"b{uuid.uuid4().hex[:8]}-"
    folder = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    policy = folder / "policy.yaml"
    policy.write_text(
        f"deadlines: {{merchant_review: {REVIEW_S}}}\nreminders: {{merchant_review: []}}\n"
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    specs = load_topic_specs(partitions=PARTITIONS, prefix=prefix)
    sink = TopicSpec(prefix + "plain-sink", "output", PARTITIONS, 1, {})
    await create_topics(admin, [*specs, sink])
    topic = prefix + "aftersale-events"
    worker = Worker(prefix, folder, policy)
    now = datetime.now(UTC)
    try:
        # (a) throughput: N requests whose deadlines are far away (they stay open), stamped a
        # second apart per 100 records as live traffic is, so deadlines spread over time
        n = args.throughput_events

        def far(i: int) -> datetime:
            return now + timedelta(hours=1, seconds=(i // 100) % 36_000)

        print(f"(a) producing {n:,} requests...", file=sys.stderr)
        await produce(prefix, [request(prefix, i, far(i)) for i in range(n)])
        # Both sides vary a lot from run to run here (the plain loop 46-72k/s over one day):
        # each runs twice, interleaved (plain, worker, worker, plain), and the best of each
        # counts. The first worker (its own group and state) is stopped; the second stays for
        # (b)-(d).
        plain_before = await plain_loop(prefix, n, "plain-before")
        other = Worker(prefix, folder, policy, "first")
        try:
            first_rate, _ = await consume_all(admin, other, topic, n)
        finally:
            other.stop()
        second_rate, base_rss = await consume_all(admin, worker, topic, n)
        worker_rate = max(first_rate, second_rate)
        # The same worker on a simulated mix: most records now find their order's state in
        # the table. Stamped two months ahead, so that nothing falls due while it is read.
        mix = simulated_mix(n, now + timedelta(days=60))
        mix_start = time.monotonic()  # the worker reads while they are produced
        await produce_routed(prefix, mix)
        inputs = (prefix + "order-events", topic)
        mix_count = len(mix)
        mix_rate = mix_count / (await wait_drained(admin, worker.app_id, 3600, *inputs) - mix_start)
        plain_after = await plain_loop(prefix, n, "plain-after")
        plain_rate = max(plain_before, plain_after)
        print(
            f"(a) worker        {worker_rate:>10,.0f} events/s   target >= 10,000 (the faster of "
            f"{first_rate:,.0f} and {second_rate:,.0f}, two workers one after the other)"
        )
        ratio = worker_rate / plain_rate
        print(
            f"    plain loop    {plain_rate:>10,.0f} events/s   ratio {ratio:.2f} (target >= 0.3; "
            f"the faster of {plain_before:,.0f} before and {plain_after:,.0f} after the worker)"
        )
        print(
            f"    simulated mix {mix_rate:>10,.0f} events/s   ({mix_count:,} records of "
            "`aftersale simulate`: orders, cases, bad input, retries)"
        )
        probes: tuple[tuple[str, list[str]], ...] = (
            ("bare faust", []),
            ("bare faust*", ["--patched"]),
        )
        for i, (label, flags) in enumerate(probes):
            # an app id under the run's prefix: its leader topic is deleted with the others
            rate_ = faust_probe(topic, n, [*flags, "--app-id", f"{prefix}probe-{i}"])
            print(
                f"    {label:<13} {rate_:>10,.0f} events/s   ratio {rate_ / plain_rate:.2f} "
                "(an agent that does nothing; * with the worker's faust changes)"
            )

        # (b) open cases up to --cases, then lateness while ingesting at half the rate
        more = max(0, args.cases - n)
        if more:
            print(f"(b) loading {more:,} more open cases...", file=sys.stderr)
            # generated as sent: a list of ten million records took more than this machine's
            # 24 GB (the bench was killed by the kernel at --cases 10000000)
            await produce(prefix, (request(prefix, n + i, far(n + i)) for i in range(more)))
            await wait_drained(admin, worker.app_id, 7200, topic)
        rss = worker.rss_mb()
        print(
            f"(d) RSS {rss:,.0f} MB with {args.cases:,} open cases "
            f"({(rss - base_rss) * 1024 * 1024 / max(1, args.cases):,.0f} bytes per case over "
            f"the {base_rss:,.0f} MB at start)"
        )
        window = args.window
        rate = args.ingest_rate or worker_rate / 2
        filler = [request(prefix, 10 * args.cases + i, far(i)) for i in range(int(rate * window))]
        # Deadlines start 5 s from now, once the records are built (building them takes about
        # 4 s, which left the first deadlines 1 s when they were set first).
        start = datetime.now(UTC) + timedelta(seconds=5)
        due = [start + timedelta(seconds=window * i / args.due) for i in range(args.due)]
        # back-dated requests: each deadline lands inside the window, spread evenly
        firing = [
            request(prefix, args.cases + i, d - timedelta(seconds=REVIEW_S))
            for i, d in enumerate(due)
        ]
        mixed = [r for pair in zip(filler, firing, strict=False) for r in pair]
        mixed += filler[len(firing) :] + firing[len(filler) :]
        print(
            f"(b) ingesting {len(mixed):,} records at {rate:,.0f}/s, {args.due:,} deadlines "
            f"over {window:.0f} s...",
            file=sys.stderr,
        )
        results = await asyncio.gather(
            produce(prefix, mixed, rate), lateness(prefix, start, window + 15)
        )
        fired, seen, lines = results[1]
        if args.dump is not None:
            args.dump.write_text("".join(line + "\n" for line in lines))
        early = sum(1 for x in fired if x < 0)
        print(f"(b) {len(fired):,} of {args.due:,} deadlines fired; early: {early}")
        for name, xs in (("fired_at - deadline", fired), ("visible - deadline", seen)):
            print(
                f"    {name:<20} p50 {pct(xs, 0.5):.3f} s  p99 {pct(xs, 0.99):.3f} s  "
                f"p99.9 {pct(xs, 0.999):.3f} s  max {max(xs, default=float('nan')):.3f} s"
            )
        print("    targets: p99 <= 1 s, p99.9 <= 2 s, never early")
        waits = worker.metric("aftersale_input_wait_seconds")
        count = waits["aftersale_input_wait_seconds_count[]"]
        within = waits["aftersale_input_wait_seconds_bucket[('le', '0.2')]"]
        mean = waits["aftersale_input_wait_seconds_sum[]"] / max(1, count)
        print(
            f"    input order's cost: {count:,.0f} records waited {mean:.3f} s on average for "
            f"their turn; {within / max(1, count):.1%} within 0.2 s (the worker's whole run)"
        )

        # (c) restart with the open cases in local RocksDB; one deadline due just after restart
        worker.stop()
        marker = datetime.now(UTC) + timedelta(seconds=2)
        case = 20 * args.cases
        await produce(prefix, [request(prefix, case, marker - timedelta(seconds=REVIEW_S))])
        restarted = worker.start()
        shown = await first_fire(prefix, f"c-{case}", restarted)
        print(f"(c) restart to first fire with {args.cases:,} open cases: {shown}   target <= 30 s")
        # ... and after kill -9: the worker is killed while it runs, a deadline due 2 s later,
        # and restarted at once (static membership: no wait for its old session)
        marker = datetime.now(UTC) + timedelta(seconds=2)
        await produce(prefix, [request(prefix, case + 1, marker - timedelta(seconds=REVIEW_S))])
        await asyncio.sleep(0.5)  # read, not yet due
        worker.kill()
        killed = time.monotonic()
        worker.start()
        shown = await first_fire(prefix, f"c-{case + 1}", killed)
        print(f"    kill -9 to first fire with {args.cases:,} open cases: {shown}   target <= 10 s")
    finally:
        worker.stop()
        try:
            await remove_run(admin, prefix, folder, keep=args.keep)
        finally:
            await admin.close()


async def first_fire(prefix: str, case_id: str, since: float) -> str:
    """How long after `since` (monotonic) the action of `case_id` became visible."""
    consumer = AIOKafkaConsumer(
        prefix + "aftersale-actions", bootstrap_servers=BOOTSTRAP, auto_offset_reset="earliest",
        isolation_level="read_committed",
    )  # fmt: skip
    await consumer.start()
    try:
        while time.monotonic() - since < 300:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    if orjson.loads(record.value)["case_id"] == case_id:
                        return f"{time.monotonic() - since:.1f} s"
    finally:
        await consumer.stop()
    return "not within 300 s"


async def remove_run(admin: AIOKafkaAdminClient, prefix: str, folder: Path, keep: bool) -> None:
    """Delete the run's topics (inputs, outputs, the workers' changelogs and ticks) and its
    folder of worker state: a full run leaves a few GB in the broker otherwise."""
    if keep:
        print(f"kept topics {prefix}* and {folder}", file=sys.stderr)
        return
    topics = await delete_topics_named(admin, prefix)
    shutil.rmtree(folder, ignore_errors=True)
    print(f"deleted {len(topics)} topics {prefix}* and {folder}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1_000_000, help="open cases for (b)-(d)")
    parser.add_argument("--throughput-events", type=int, default=200_000, help="records for (a)")
    parser.add_argument("--due", type=int, default=5_000, help="deadlines measured in (b)")
    parser.add_argument("--window", type=float, default=60.0, help="seconds of (b)")
    parser.add_argument(
        "--ingest-rate",
        type=float,
        help="records/s ingested during (b) (default: half of (a)'s worker rate)",
    )
    parser.add_argument(
        "--dump", type=Path, help="write (b)'s deadline_at, fired_at and seen time per action"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the run's topics and worker state afterwards"
    )
    parser.add_argument(
        "--worker-log-level",
        default="warning",
        help="the workers' log level (info shows each phase of a start, with --keep)",
    )
    args = parser.parse_args()
    Worker.log_level = args.worker_log_level
    args.cases = max(args.cases, args.throughput_events)
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
