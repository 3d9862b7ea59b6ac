"""Seeking to committed offsets rewinds stream partitions never committed (no broker)."""

from __future__ import annotations

from typing import Any

from aiokafka.consumer.fetcher import OffsetResetStrategy
from aiokafka.structs import TopicPartition

from streams.patches.uncommitted_seek import _seek_all, _seek_to_committed, unread

A0, A1, A2 = (TopicPartition("aftersale-events", n) for n in range(3))
LOG = TopicPartition("app-orders-changelog", 1)


class FakeConsumer:
    """aiokafka's consumer as far as the seek goes: committed offsets, and the seeks made."""

    def __init__(self, committed: dict[TopicPartition, int | None], reset: int) -> None:
        self.committed = committed
        self.to_beginning: list[TopicPartition] = []
        self._fetcher = type("Fetcher", (), {"_default_reset_strategy": reset})()

    async def seek_to_committed(self) -> dict[TopicPartition, int | None]:
        return dict(self.committed)

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self.to_beginning.extend(partitions)


def test_unread_partitions_are_those_committed_at_none_or_zero() -> None:
    assert unread({A0: None, A1: 0, A2: 7}) == [A0, A1]


async def test_uncommitted_stream_partitions_are_rewound_to_the_log_start() -> None:
    consumer = FakeConsumer({A0: None, A1: 0, A2: 7, LOG: None}, OffsetResetStrategy.EARLIEST)
    committed = await _seek_all(consumer, lambda tp: tp.topic.endswith("-changelog"))
    assert committed == {A0: None, A1: 0, A2: 7, LOG: None}  # what faust records, unchanged
    assert consumer.to_beginning == [A0, A1]  # not the committed one, not the changelog


async def test_with_another_reset_policy_nothing_is_added() -> None:
    consumer = FakeConsumer({A0: None}, OffsetResetStrategy.LATEST)
    await _seek_all(consumer, lambda tp: False)
    assert consumer.to_beginning == []


async def test_the_thread_method_runs_the_seek_in_the_consumer_thread() -> None:
    fake = FakeConsumer({A0: None, A2: 3}, OffsetResetStrategy.EARLIEST)
    calls: list[Any] = []

    class Thread:
        consumer = type("FaustConsumer", (), {"_is_changelog_tp": staticmethod(lambda tp: False)})

        def _ensure_consumer(self) -> FakeConsumer:
            return fake

        async def call_thread(self, method: Any, *args: Any) -> Any:
            calls.append(method)
            return await method(*args)

    assert await _seek_to_committed(Thread()) == {A0: None, A2: 3}
    assert calls == [_seek_all]
    assert fake.to_beginning == [A0]
