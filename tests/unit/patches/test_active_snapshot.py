"""The consumer thread gets the active partitions as they were when asked (no broker)."""

from __future__ import annotations

import asyncio
from typing import Any

from streams.patches.active_snapshot import _wait_next_records


class FakeConsumer:
    """faust's Consumer as far as `_wait_next_records` goes; `_getmany` stands for the thread."""

    def __init__(self, active: set[str]) -> None:
        self.active = active
        self.flow_active = True
        self.app = type("App", (), {"client_only": False})()
        self.not_waiting_next_records = asyncio.Event()
        self.asked: Any = None
        self.slept = 0.0

    def _get_active_partitions(self) -> set[str]:
        return self.active

    async def _getmany(self, active_partitions: Any, timeout: float) -> dict[str, list[int]]:  # noqa: ASYNC109
        self.asked = active_partitions
        self.active.clear()  # recovery pauses everything while the thread waits
        await asyncio.sleep(0)
        return {tp: [1] for tp in active_partitions}

    async def sleep(self, seconds: float) -> None:
        self.slept += seconds


async def test_the_thread_drains_what_was_active_when_asked_though_the_set_empties() -> None:
    consumer = FakeConsumer({"a-0", "a-1"})
    records, active = await _wait_next_records(consumer, 1.0)
    assert consumer.asked == {"a-0", "a-1"}
    assert consumer.asked is not consumer.active  # a copy: aiokafka reads empty as "all"
    assert records == {"a-0": [1], "a-1": [1]}
    assert active is consumer.active  # faust checks the records against the live set


async def test_with_nothing_active_nothing_is_asked() -> None:
    consumer = FakeConsumer(set())
    records, _ = await _wait_next_records(consumer, 1.0)
    assert records == {}
    assert consumer.asked is None
    assert consumer.slept == 1
