"""Fixes to faust-streaming 0.15.3 that exactly-once deadlines depend on, applied at import.

Each fix names what goes wrong without it and the test that shows it.

1. Table recovery under exactly_once. faust asks for changelog high-waters with
   `last_stable_offset(tp)`, a value the consumer only knows for partitions it has already
   fetched; for a changelog partition a worker has just been given it answers "nothing", so
   the table restores nothing and the orders of that partition are forgotten. With the fix the
   consumer asks the broker (`end_offsets`, which under read_committed is the last stable
   offset, as the original meant). Shown by
   tests/integration/test_worker_failures.py::test_two_workers_split_partitions_and_survive_a_rebalance.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from faust.transport.drivers import aiokafka as faust_aiokafka

#: The upstream methods this module replaces (fingerprinted in `upstream.py`).
REPLACES: Final = ("faust.transport.drivers.aiokafka:AIOKafkaConsumerThread._highwaters",)


async def _highwaters_from_broker(self: Any, partitions: list[Any]) -> Mapping[Any, int]:
    consumer = self._ensure_consumer()
    ends: Mapping[Any, int] = await consumer.end_offsets(partitions)
    return ends


def install() -> None:
    """Install the fixes (idempotent)."""
    faust_aiokafka.AIOKafkaConsumerThread._highwaters = _highwaters_from_broker  # type: ignore[method-assign]
