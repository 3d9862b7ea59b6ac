"""Seeking "to committed" also rewinds partitions that have no committed offset yet.

faust stops its flow at every rebalance and drops whatever it had fetched but not yet handed
to its streams (`Consumer.getmany` breaks off; records of a partition paused for recovery are
skipped). It relies on `Consumer.perform_seek` to fetch them again: aiokafka's
`seek_to_committed`, after recovery and whenever a fetch returns while the flow is stopped.
But aiokafka seeks only partitions whose committed offset is above 0 (`if offset and offset >
0`). A partition with no committed offset, none of its records processed yet (say one a
crashed member never committed), keeps its fetch position past the dropped records, and they
are never read: the survivor owns the partition and its log end moves on while its input
waits forever. Found by tests/integration/test_faults.py (a crashed member's partitions moved
to the survivor: the survivor's position stood at the log end, faust's read offset at none,
in about one run in five).

Here the seek also rewinds those partitions to where an uncommitted partition begins for this
group: the log start (the worker's `auto_offset_reset` is earliest; with any other reset
policy nothing is added). Changelog partitions are left alone: faust's recovery positions
them itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from aiokafka.consumer.fetcher import OffsetResetStrategy
from aiokafka.structs import OffsetAndMetadata, TopicPartition
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

#: The upstream methods this module replaces (fingerprinted in `upstream.py`).
REPLACES: Final = ("faust.transport.drivers.aiokafka:AIOKafkaConsumerThread.seek_to_committed",)


def unread(committed: Mapping[TopicPartition, int | OffsetAndMetadata | None]) -> list[Any]:
    """The partitions aiokafka's `seek_to_committed` left where they were: committed none or 0."""
    return sorted(tp for tp, offset in committed.items() if not offset)


async def _seek_all(consumer: Any, is_changelog: Any) -> Mapping[TopicPartition, int]:
    committed: Mapping[TopicPartition, int] = await consumer.seek_to_committed()
    if consumer._fetcher._default_reset_strategy == OffsetResetStrategy.EARLIEST:
        rewind = [tp for tp in unread(committed) if not is_changelog(tp)]
        if rewind:
            await consumer.seek_to_beginning(*rewind)
    return committed


async def _seek_to_committed(self: Any) -> Mapping[TopicPartition, int]:
    """`AIOKafkaConsumerThread.seek_to_committed`, rewinding uncommitted stream partitions."""
    committed: Mapping[TopicPartition, int] = await self.call_thread(
        _seek_all, self._ensure_consumer(), self.consumer._is_changelog_tp
    )
    return committed


def install() -> None:
    """Install the rewinding seek (idempotent)."""
    AIOKafkaConsumerThread.seek_to_committed = _seek_to_committed  # type: ignore[method-assign]
