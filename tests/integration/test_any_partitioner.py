"""A deadline waits for a record of its order that a producer put on another partition, while
the worker that owns that partition has not read it (topics/contract.md: a record placed
otherwise is judged with its order; no deadline fires while a record written before it is
unread). Found by the fault campaign (tests/chaos): the deadline fired on the order's
partition while the merchant's in-time answer sat unread on another worker's partition, then
the answer was refused as late."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from datetime import UTC, datetime

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer

from streams.contract.times import format_time
from streams.live.partitioning import partition_of
from tests.integration.endpoints import BOOTSTRAP
from tests.integration.worker_harness import (
    PARTITIONS,
    Env,
    Feeder,
    WorkerProcess,
    free_port,
    read_outputs,
    split_between_two,
    wait_for,
)

REVIEW_S = 3.0  # merchant_review in the tests' fast policy


async def owned(session: aiohttp.ClientSession, port: int) -> set[int]:
    """The partitions a worker says it owns (its /readyz)."""
    async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
        body = await response.json()
    return set(body["partitions"])


async def awaiting_refund(session: aiohttp.ClientSession, port: int) -> float:
    """Open cases a worker holds approved, waiting for the refund to be executed (/metrics)."""
    async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
        text = await response.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith('aftersale_open_cases{phase="awaiting_refund"}')
    )


async def test_a_deadline_waits_for_its_orders_record_on_another_workers_partition(
    env: Env, workers: Callable[..., WorkerProcess]
) -> None:
    ports = free_port(), free_port()
    first = workers("w1", AFTERSALE_WEB_PORT=str(ports[0]))
    second = workers("w2", AFTERSALE_WEB_PORT=str(ports[1]))
    first.start()
    second.start()
    await first.wait_ready()
    await second.wait_ready()
    await split_between_two(env, [first, second])
    async with aiohttp.ClientSession() as session:
        split: list[set[int]] = []

        async def settled() -> bool:
            split[:] = [await owned(session, port) for port in ports]
            return all(split) and split[0] | split[1] == set(range(PARTITIONS))

        await wait_for(settled, lambda: f"each worker to own partitions: {split}", 30.0)
        mine, theirs = split
        candidates = (f"{env.prefix}o-{n}" for n in range(1000))
        order = next(o for o in candidates if partition_of(o, PARTITIONS) in mine)
        elsewhere = min(theirs)
        async with Feeder(env.prefix) as feed:
            await feed.request(order, "c-1", kind="refund_only")  # on its own partition
        assert second.process is not None
        second.process.send_signal(signal.SIGSTOP)  # the other partition goes unread
        try:
            # the merchant refunds in time, through a producer that places records otherwise
            approval = {
                "event_id": f"{env.prefix}e-approve", "type": "aftersale.approved",
                "order_id": order, "case_id": "c-1",
                "occurred_at": format_time(datetime.now(UTC)),
            }  # fmt: skip
            producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
            await producer.start()
            try:
                await producer.send_and_wait(
                    f"{env.prefix}aftersale-events", orjson.dumps(approval),
                    key=order.encode(), partition=elsewhere,
                )  # fmt: skip
            finally:
                await producer.stop()
            # the deadline passes while the answer waits unread on the stopped worker's
            # partition (well within its session: it keeps its partitions)
            await asyncio.sleep(REVIEW_S + 2.0)
            early = await read_outputs(env.prefix, settle=0.5)
            assert early["aftersale-actions"] == []  # before: auto_refund at the deadline
        finally:
            second.process.send_signal(signal.SIGCONT)

        # read at last, the answer is rerouted to the order's partition and judged in time
        async def approved() -> bool:
            return await awaiting_refund(session, ports[0]) == 1

        await wait_for(approved, lambda: f"the case approved\n{first.tail()}", 60.0)
    outputs = await read_outputs(env.prefix, settle=1.0)
    assert outputs["aftersale-actions"] == []
    assert outputs["aftersale-deadletter"] == []  # before: the answer refused as late
