"""Fixes to faust-streaming 0.15.3 that exactly-once deadlines depend on, applied at import.

Each fix names what goes wrong without it and the test that shows it.

1. Table recovery under exactly_once. faust asks for changelog high-waters with
   `last_stable_offset(tp)`, a value the consumer only knows for partitions it has already
   fetched; for a changelog partition a worker has just been given it answers "nothing", so
   the table restores nothing and the orders of that partition are forgotten. With the fix the
   consumer asks the broker (`end_offsets`, which under read_committed is the last stable
   offset, as the original meant). Shown by
   tests/integration/test_worker_failures.py::test_two_workers_split_partitions_and_survive_a_rebalance.

2. Recovery's end under exactly_once. faust's recovery loop waits for changelog records with
   a 5 s timeout, and only after two such timeouts in a row asks whether the consumer's
   position has passed the high-water mark. Under read_committed the last offsets of a
   changelog written in transactions are commit markers, which are never delivered, so every
   recovery (each start, each rebalance) ended with 10 s of waiting, all the worker's
   partitions idle (a kill -9 and restart took 12.5-16.7 s to process again; 1.5-1.9 s under
   at_least_once). Here the loop's wait is IDLE_S, so it ends after two idle waits, 1 s. The
   two waits are kept: faust wants the changelog queue seen empty twice before trusting the
   position.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Mapping
from typing import Any, Final, TypeVar

from faust.tables import recovery as faust_recovery
from faust.transport.drivers import aiokafka as faust_aiokafka

#: The upstream methods this module replaces (fingerprinted in `upstream.py`).
REPLACES: Final = ("faust.transport.drivers.aiokafka:AIOKafkaConsumerThread._highwaters",)
#: The upstream methods whose behaviour it changes in place (their waits), also fingerprinted.
ALTERS: Final = ("faust.tables.recovery:Recovery._slurp_changelogs",)
#: How long recovery waits for a changelog record before it counts an idle wait.
IDLE_S: Final = 0.5

T = TypeVar("T")


async def _highwaters_from_broker(self: Any, partitions: list[Any]) -> Mapping[Any, int]:
    consumer = self._ensure_consumer()
    ends: Mapping[Any, int] = await consumer.end_offsets(partitions)
    return ends


class _RecoveryAsyncio(types.ModuleType):
    """asyncio as faust's recovery module sees it: the same, but `wait_for` waits at most IDLE_S
    (its one `wait_for` is the recovery loop's wait for a changelog record)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    @staticmethod
    async def wait_for(awaitable: Awaitable[T], timeout: float | None) -> T:  # noqa: ASYNC109 - asyncio.wait_for's signature
        bounded = IDLE_S if timeout is None else min(timeout, IDLE_S)
        return await asyncio.wait_for(awaitable, bounded)


def install() -> None:
    """Install the fixes (idempotent)."""
    faust_aiokafka.AIOKafkaConsumerThread._highwaters = _highwaters_from_broker  # type: ignore[method-assign]
    faust_recovery.asyncio = _RecoveryAsyncio("asyncio")  # type: ignore[attr-defined]
