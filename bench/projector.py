"""The projector's sustained rate: status records applied to Redis per second.

    python bench/projector.py [--records 500000] [--partitions 12] [--projectors 1]
                              [--batch N] [--keep]

Builds (once, cached under bench/data/) the status feed of a simulated run (`aftersale
simulate`, then `aftersale replay --status`), cut to --records records; produces it, keyed by
order_id, in Kafka transactions of 10,000 records, into a fresh `<app id>-status` topic; then
starts `aftersale project` on it (--projectors processes in one group, sharing the partitions)
against the local stack's Redis and times it from its first applied batch to its last, polling
the offsets it stores in Redis. Prints records/s next to what the worker needs: its sustained
rate (about 20,000 events/s, README "The streaming worker", bench/stream.py (a)) times the
status records per input event of the same run, and the ratio of the two (>= 1: the
projectors keep up with one worker), and the same against one status record per event. Also
prints the CPU the projectors and Redis used, and Redis memory per order kept. Needs the local
stack (`make stack-up`). The topic and the run's Redis keys are deleted afterwards (--keep
keeps them).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import confluent_kafka
import orjson
import redis.asyncio as aioredis
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.contract.times import parse_time
from streams.live.admin import until_listed
from streams.readside.redis_store import RedisStore
from streams.rules.policy import Policy
from streams.tools.replay import STATUS_FILE, replay
from streams.tools.simulate import generate

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
DATA = Path(__file__).resolve().parent / "data"
#: The worker's sustained rate on this machine (README: 16,600-25,100 events/s over runs).
WORKER_EVENTS_PER_S = 20_000
#: Status records per simulated order (measured: about 2.2); orders are sized from it.
RECORDS_PER_ORDER = 2.1
UNTIL = "2027-01-01T00:00:00Z"
PER_TRANSACTION = 10_000


def build_feed(records: int) -> tuple[Path, float]:
    """The cached feed of at least `records` status records, and status records per event."""
    DATA.mkdir(exist_ok=True)
    orders = int(records / RECORDS_PER_ORDER) + 1
    feed = DATA / f"status-{orders}.jsonl"
    ratio_file = DATA / f"status-{orders}.ratio"
    if not feed.exists():
        events = DATA / f"status-events-{orders}.jsonl"
        print(f"building the feed: simulate {orders:,} orders, replay --status", flush=True)
        with events.open("wb") as out:
            # orders paid over two weeks: refund rates over several days
            for line in generate(orders, seed=5, span=timedelta(days=14)):
                out.write(line + b"\n")
        out_dir = DATA / f"status-replay-{orders}"
        summary = replay(events, out_dir, Policy(), parse_time(UNTIL), status=True)
        (out_dir / STATUS_FILE).rename(feed)
        ratio_file.write_text(str(sum(1 for _ in feed.open("rb")) / summary.read))
        events.unlink()
    return feed, float(ratio_file.read_text())


def produce(topic: str, lines: list[bytes]) -> None:
    """Every line into `topic`, keyed by order_id, in transactions (as the worker writes)."""
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
            "transactional.id": f"{topic}-bench",
        }
    )
    producer.init_transactions(30)
    for start in range(0, len(lines), PER_TRANSACTION):
        producer.begin_transaction()
        for line in lines[start : start + PER_TRANSACTION]:
            key = orjson.loads(line)["order_id"].encode()
            while True:
                try:
                    producer.produce(topic, line, key, on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.01)
        producer.commit_transaction(60)
    if failed:
        raise SystemExit(f"{len(failed)} records not delivered, first: {failed[0]}")


def start_projector(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "streams.tools.cli", "project"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def redis_cpu(client: aioredis.Redis) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def run(args: argparse.Namespace) -> None:
    feed, per_event = build_feed(args.records)
    lines = feed.read_bytes().splitlines()[: args.records]
    app_id = f"bench-projector-{uuid.uuid4().hex[:8]}"
    topic = f"{app_id}-status"
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    client = aioredis.from_url(REDIS_URL)
    store = RedisStore(client, f"{app_id}:", topic)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        await admin.create_topics([NewTopic(topic, args.partitions, 1)])
        await until_listed(admin, {topic})
        print(f"producing {len(lines):,} status records to {topic}", flush=True)
        started = time.monotonic()
        await asyncio.to_thread(produce, topic, lines)
        print(f"  produced in {time.monotonic() - started:.1f} s", flush=True)
        memory_before = int((await client.info("memory"))["used_memory"])
        env = dict(os.environ)
        env.update(
            AFTERSALE_KAFKA_BOOTSTRAP=BOOTSTRAP,
            AFTERSALE_APP_ID=app_id,
            AFTERSALE_REDIS_URL=REDIS_URL,
            AFTERSALE_PARTITIONS=str(args.partitions),
        )
        if args.batch:
            env["AFTERSALE_PROJECTOR_BATCH"] = str(args.batch)
        logs = [DATA / f"projector-bench-{n}.log" for n in range(args.projectors)]
        processes = [start_projector(env, log) for log in logs]
        partitions = range(args.partitions)
        first_at = first_count = 0.0
        cpu_start = redis_start = 0.0
        last_count, last_change = -1, time.monotonic()
        while True:
            await asyncio.sleep(0.1)
            offsets = await store.stored_offsets(partitions)
            count = sum(o + 1 for o in offsets.values())
            now = time.monotonic()
            if count and not first_at:
                first_at, first_count = now, count
                cpu_start = sum(cpu_seconds(p.pid) for p in processes)
                redis_start = await redis_cpu(client)
            if count != last_count:
                last_count, last_change = count, now
            # offsets count the commit markers too: done when nothing moves for 3 s
            if first_at and now - last_change > 3.0:
                break
            if any(p.poll() is not None for p in processes):
                raise SystemExit(f"a projector exited: see {DATA}/projector-bench-*.log")
        done_at = last_change
        cpu = sum(cpu_seconds(p.pid) for p in processes) - cpu_start
        redis_used = await redis_cpu(client) - redis_start
        snapshot_orders = len([k async for k in client.scan_iter(match=f"{app_id}:order:*")])
        memory = int((await client.info("memory"))["used_memory"]) - memory_before
        applied = 0
        for process, log in zip(processes, logs, strict=True):
            process.send_signal(signal.SIGTERM)
            process.wait(30)
            tail = log.read_text().splitlines()[-1]
            applied += int(tail.split("projector stopped: ")[1].split()[0])
        seconds = done_at - first_at
        # applied after the first poll saw some (offsets also count commit markers: scaled)
        measured = applied * (count - first_count) / count
        rate = measured / seconds
        needed = WORKER_EVENTS_PER_S * per_event
        print(
            f"records applied      {applied:,} ({args.partitions} partitions, "
            f"{args.projectors} projector{'s' if args.projectors > 1 else ''})"
        )
        print(f"sustained            {rate:,.0f} records/s over {seconds:.1f} s")
        per_record = cpu * 1e6 / measured
        print(f"projector CPU        {cpu / seconds:.0%} of a core ({per_record:.0f} us/record)")
        print(f"Redis CPU            {redis_used / seconds:.0%} of a core")
        print(f"Redis memory         {memory / max(snapshot_orders, 1):,.0f} bytes per order kept "
              f"({snapshot_orders:,} orders, {memory / 1e6:,.0f} MB)")  # fmt: skip
        print(f"worker               {WORKER_EVENTS_PER_S:,} events/s x {per_event:.2f} status "
              f"records/event = {needed:,.0f} records/s")  # fmt: skip
        print(f"ratio                {rate / needed:.2f} (projector / worker's status rate)")
        print(
            f"ratio at 1 record/event {rate / WORKER_EVENTS_PER_S:.2f} (projector / "
            f"{WORKER_EVENTS_PER_S:,} records/s)"
        )
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        if not args.keep:
            await store.delete_all()
            await admin.delete_topics([topic])
        await admin.close()
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--projectors", type=int, default=1, help="projector processes")
    parser.add_argument("--batch", type=int, default=0, help="AFTERSALE_PROJECTOR_BATCH")
    parser.add_argument("--keep", action="store_true", help="keep the topic and Redis keys")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
