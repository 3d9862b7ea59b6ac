"""The policy's `order_retention` on the real broker: a forgotten order is a tombstone on the
state changelog, gone from the local store, and stays gone across a restart."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer

from tests.integration.endpoints import BOOTSTRAP
from tests.integration.worker_harness import (
    FAST_POLICY,
    PARTITIONS,
    Env,
    Feeder,
    Outputs,
    TopicReader,
    WorkerProcess,
    read_outputs,
    wait_for,
    wait_for_outputs,
)

RETENTION = 6  # seconds, after the case's 3 s merchant_review decides it
#: What the worker logs once it has indexed a partition's due times from its table.
INDEXED = re.compile(rb"partition (\d+): (\d+) orders, \d+ with a due time, indexed")


async def changelog(app_id: str, settle: float = 3.0) -> dict[bytes, list[bytes | None]]:
    """Every committed value of the orders table's changelog, by key, in offset order."""
    consumer = AIOKafkaConsumer(
        f"{app_id}-orders-changelog",
        bootstrap_servers=BOOTSTRAP,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    await consumer.start()
    values: dict[bytes, list[bytes | None]] = {}
    try:
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < settle:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    assert record.key is not None
                    values.setdefault(record.key, []).append(record.value)
                    quiet_since = time.monotonic()
    finally:
        await consumer.stop()
    return values


async def wait_forgotten(app_id: str, order: str, worker: WorkerProcess, within: float) -> None:
    """Wait until the last value of `order` on the state changelog is a tombstone."""
    topic = f"{app_id}-orders-changelog"
    async with TopicReader(topic) as reader:

        async def tombstone_last() -> bool:
            await reader.poll()
            values = [value for key, value in reader.records[topic] if key == order.encode()]
            return bool(values) and values[-1] is None

        what = f"a tombstone of {order} on {topic}"
        await wait_for(tombstone_last, what, within, workers=[worker], every=0)


async def orders_indexed(worker: WorkerProcess) -> dict[int, int]:
    """Wait until the worker's log says it has indexed every partition from its table; answer
    the number of orders the table held, by partition."""

    async def every_partition() -> dict[int, int] | None:
        counts = {int(p): int(n) for p, n in INDEXED.findall(worker.log.read_bytes())}
        return counts if len(counts) == PARTITIONS else None

    what = f"{worker.log} to say every partition is indexed"
    return await wait_for(every_partition, what, 60, workers=[worker])


@pytest.mark.parametrize("store", ["rocksdb", "memory"])
async def test_a_forgotten_order_is_a_tombstone_and_stays_gone_after_a_restart(
    env: Env, workers: Callable[..., WorkerProcess], store: str
) -> None:
    env.policy.write_text(FAST_POLICY + f"order_retention: {RETENTION}\n")
    worker = workers(AFTERSALE_STORE=store)
    worker.start()
    await worker.wait_ready()
    order = f"{env.prefix}o-1"
    async with Feeder(env.prefix) as feed:
        await feed.request(order, "c-1", kind="refund_only")  # auto_refund at 3 s

        def missing(live: Outputs) -> list[str]:
            decided = any(
                a["action_id"] == "c-1:merchant_review" for a in live["aftersale-actions"]
            )
            return [] if decided else ["c-1:merchant_review"]

        await wait_for_outputs(env.prefix, missing, "c-1's auto_refund", workers=[worker])
        # closed, and within the retention: its case id cannot be used again
        await feed.request(order, "c-1", kind="refund_only")
    await wait_forgotten(env.app_id, order, worker, RETENTION + 30)  # decided 3 s in: by 9 s
    states = await changelog(env.app_id)
    assert states[order.encode()][-1] is None, worker.tail()  # a tombstone last
    assert all(value is not None for value in states[order.encode()][:-1])

    worker.stop()
    worker.start()
    await worker.wait_ready()
    # the restarted worker has recovered its table, and o-1 is not in it
    assert await orders_indexed(worker) == dict.fromkeys(range(PARTITIONS), 0), worker.tail()
    # Scenario, not waiting: a window for what must not happen (the second tombstone below),
    # from the first timer run (every 0.1 s) on, committed within 0.5 s; 2 s on a busy machine.
    await asyncio.sleep(2)
    # Recovery kept the deletion: had the order come back, its expiry (long past) would
    # have made the restarted worker forget it again, with a second tombstone.
    assert await changelog(env.app_id) == states, worker.tail()
    async with Feeder(env.prefix) as feed:
        # o-1 comes back as a new order: its old case is unknown, not closed
        await feed.send("aftersale.approved", order, "c-1")
    live = await read_outputs(env.prefix)
    assert [d["error"] for d in live["aftersale-deadletter"]] == [
        "case_already_open",
        "unknown_case",
    ], worker.tail()
    assert [a["action_id"] for a in live["aftersale-actions"]] == ["c-1:merchant_review"]
    assert worker.errors() == []
