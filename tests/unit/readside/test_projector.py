"""The projector's loop decisions without Kafka or Redis: waiting for Redis, seeking from the
offsets stored there, rewinding a partition Redis lost, skipping what another applied."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import pytest
from aiokafka import TopicPartition

from streams.live.settings import Settings
from streams.readside.projection import Delivered, decode_record
from streams.readside.projector import Projector, _Assignments, _Stopped
from streams.readside.redis_store import BatchResult, StoreUnavailable
from streams.readside.settings import ReadSettings

TOPIC = "app-status"
RECORD = decode_record(
    b'{"type":"order_paid","order_id":"o","merchant_id":"m","at":"2026-11-01T00:00:00Z","amount":1}'
)


class FakeConsumer:
    def __init__(self, assigned: set[TopicPartition]) -> None:
        self.assigned = assigned
        self.sought: list[tuple[int, int]] = []
        self.paused: set[TopicPartition] = set()

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.sought.append((tp.partition, offset))

    def pause(self, *tps: TopicPartition) -> None:
        self.paused.update(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused.difference_update(tps)


class FakeStore:
    """Unavailable for `down` calls, then answers."""

    def __init__(self, down: int = 0, stored: dict[int, int] | None = None) -> None:
        self.down = down
        self.stored = stored or {}
        self.result = BatchResult(0, 0, {}, {}, 0)
        self.calls = 0

    def _maybe_down(self) -> None:
        self.calls += 1
        if self.calls <= self.down:
            raise StoreUnavailable("ConnectionError: Connection refused")

    async def stored_offsets(self, partitions: Collection[int]) -> dict[int, int]:
        self._maybe_down()
        return {p: self.stored.get(p, -1) for p in partitions}

    async def apply_batch(
        self, batch: Sequence[Delivered], expected: Mapping[int, int]
    ) -> BatchResult:
        self._maybe_down()
        return self.result


def projector(store: FakeStore, *partitions: int) -> tuple[Projector, FakeConsumer]:
    worker = Settings.from_env({"AFTERSALE_APP_ID": "app"})
    read = ReadSettings.from_env(
        {"AFTERSALE_PROJECTOR_RETRY_MAX": "0.01", "AFTERSALE_REDIS_URL": "redis://:pw@h:1/0"}
    )
    consumer = FakeConsumer({TopicPartition(TOPIC, p) for p in partitions})
    made = Projector(worker, read, store, consumer)  # type: ignore[arg-type]
    return made, consumer


async def test_redis_down_is_waited_for_logged_and_never_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FakeStore(down=3)
    made, _ = projector(store, 0)
    caplog.set_level(logging.INFO, "aftersale.projector")
    offsets = await made._until_redis(lambda: store.stored_offsets({0}), asyncio.Event())
    assert offsets == {0: -1}
    assert store.calls == 4
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "Redis at redis://:****@h:1/0 is unavailable (ConnectionError" in lines[0]
    assert "no record is skipped" in lines[0]
    assert "Redis is back after" in lines[1]
    assert "pw" not in caplog.text


async def test_a_stop_while_redis_is_down_leaves_the_batch_for_the_next_run() -> None:
    store = FakeStore(down=10**9)
    made, _ = projector(store, 0)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, stop.set)
    with pytest.raises(_Stopped):
        await made._apply([Delivered(0, 0, RECORD)], stop)
    assert made.stats.batches == 0


async def test_assigned_partitions_wait_paused_then_resume_after_the_offsets_in_redis() -> None:
    store = FakeStore(stored={0: 41})
    made, consumer = projector(store, 0, 1)
    listener = _Assignments(made)
    await listener.on_partitions_assigned(consumer.assigned)
    assert consumer.paused == consumer.assigned
    await made._seek_pending(asyncio.Event())
    assert sorted(consumer.sought) == [(0, 42), (1, 0)]
    assert consumer.paused == set()
    assert made.expected == {0: 41, 1: -1}
    await listener.on_partitions_revoked({TopicPartition(TOPIC, 1)})
    assert made.expected == {0: 41}


async def test_a_partition_redis_lost_is_read_again_and_one_another_did_is_skipped() -> None:
    store = FakeStore()
    made, consumer = projector(store, 0, 1, 2)
    made.expected = {0: 99, 1: 10, 2: 10}
    # 0: Redis went back to 49; 1: applied up to 12 here; 2: another projector reached 500
    store.result = BatchResult(2, 3, {0: 49, 1: 12, 2: 500}, {0: 49}, 1)
    batch: list[Any] = [
        Delivered(0, 100, RECORD),
        Delivered(1, 11, RECORD),
        Delivered(1, 12, RECORD),
        Delivered(2, 11, RECORD),
    ]
    await made._apply(batch, asyncio.Event())
    assert sorted(consumer.sought) == [(0, 50), (2, 501)]
    assert made.expected == {0: 49, 1: 12, 2: 500}
    assert (made.stats.applied, made.stats.skipped, made.stats.rewinds) == (2, 3, 1)
    assert made.stats.conflicts == 1
