"""The policy's `order_retention` on the real broker: a forgotten order is a tombstone on the
state changelog, gone from the local store, and stays gone across a restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer

from tests.integration.endpoints import BOOTSTRAP
from tests.integration.worker_harness import FAST_POLICY, Env, Feeder, WorkerProcess, read_outputs

RETENTION = 6  # seconds, after the case's 3 s merchant_review decides it


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
        await asyncio.sleep(4.5)
        # closed, and within the retention: its case id cannot be used again
        await feed.request(order, "c-1", kind="refund_only")
        await asyncio.sleep(RETENTION + 1)  # decided 3 s in: forgotten by 9 s
    states = await changelog(env.app_id)
    assert states[order.encode()][-1] is None, worker.tail()  # a tombstone last
    assert all(value is not None for value in states[order.encode()][:-1])

    worker.stop()
    worker.start()
    await worker.wait_ready()
    await asyncio.sleep(2)  # time for a resurrected order to be forgotten again
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
