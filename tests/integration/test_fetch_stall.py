"""`streams.patches.fetch_stall` on the real broker: a busy partition is fetched again as soon as
the app has taken its records, even while an idle partition of the same broker has nothing new.

The consumer is built as faust builds the worker's (`fetch_max_wait_ms=1500`, read_committed)
and takes its records as a busy agent does, a while after they arrived.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.consumer import fetcher as aiokafka_fetcher

from streams.live.admin import until_listed
from streams.patches import fetch_stall
from tests.integration.endpoints import BOOTSTRAP

#: Between two takes: longer than aiokafka's 100 ms prefetch backoff, shorter than HOLD_S.
BUSY_S = 0.3


@pytest.fixture
async def busy_and_idle(admin: AIOKafkaAdminClient, unique: str) -> AsyncIterator[tuple[str, str]]:
    names = (f"{unique}-busy", f"{unique}-idle")
    await admin.create_topics([NewTopic(name, 1, 1) for name in names])
    await until_listed(admin, set(names))
    try:
        yield names
    finally:
        await admin.delete_topics(list(names))


async def longest_wait(busy: str, idle: str, seconds: float = 4.0) -> float:
    """The longest a take waited for records while records kept coming to `busy`."""
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=0)
    consumer = AIOKafkaConsumer(
        busy, idle, bootstrap_servers=BOOTSTRAP, auto_offset_reset="earliest",
        fetch_max_wait_ms=1500, isolation_level="read_committed", enable_auto_commit=False,
    )  # fmt: skip
    await producer.start()
    await consumer.start()

    async def feed() -> None:
        while True:
            await producer.send_and_wait(busy, b"x")
            await asyncio.sleep(0.005)  # scenario: a steady stream into the busy partition

    feeder = asyncio.create_task(feed())
    longest = 0.0
    try:
        assert await consumer.getmany(timeout_ms=10_000), "no first records"
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await asyncio.sleep(BUSY_S)  # scenario: the agent is busy with what it took
            asked = time.monotonic()
            assert await consumer.getmany(timeout_ms=5_000), "no records for 5 s"
            longest = max(longest, time.monotonic() - asked)
    finally:
        feeder.cancel()
        await consumer.stop()
        await producer.stop()
    return longest


@pytest.fixture
def shipped_fetcher(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiokafka's fetcher as shipped, even where an app built earlier in this process installed
    the fix; whatever a test installs is undone after it."""
    fetcher = aiokafka_fetcher.Fetcher
    monkeypatch.setattr(fetcher, "_get_actions_per_node", fetch_stall._get_actions_per_node)
    monkeypatch.setattr(fetcher, "_proc_fetch_request", fetch_stall._proc_fetch_request)


@pytest.mark.usefixtures("shipped_fetcher")
async def test_without_the_fix_a_fetch_of_the_idle_partition_holds_the_busy_one(
    busy_and_idle: tuple[str, str],
) -> None:
    # (this test fails once aiokafka no longer stalls here: the fix may go then)
    assert await longest_wait(*busy_and_idle) > 0.8


@pytest.mark.usefixtures("shipped_fetcher")
async def test_with_the_fix_the_busy_partition_is_fetched_once_taken(
    busy_and_idle: tuple[str, str],
) -> None:
    fetch_stall.install()
    assert await longest_wait(*busy_and_idle) < 0.3
