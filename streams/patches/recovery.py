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

3. The end of recovery. faust's `Recovery.on_recovery_completed` resumes the stream
   partitions and only then seeks them to their committed offsets, one OffsetFetch per
   partition, which takes a few hundred milliseconds; the flow is already running (recovery
   resumed it to read the changelogs), so the fetcher hands the stream the records of the
   partition's old position meanwhile, and after the seek the same records again. Seen in
   the fault campaign (tests/chaos) and tests/integration/test_faults.py: a record judged
   twice (two identical dead letters in one transaction), records from past the committed
   offset judged before the ones before it, and a partition whose records the stream was
   handed and never saw, so that it stood still at the end of recovery until the worker
   restarted. Here the seek comes first, while the partitions are still paused: the first
   record the stream gets of a partition is the one at its committed offset.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Mapping
from typing import Any, Final, TypeVar

from faust.tables import recovery as faust_recovery
from faust.transport.drivers import aiokafka as faust_aiokafka

#: The upstream methods this module replaces (fingerprinted in `upstream.py`).
REPLACES: Final = (
    "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread._highwaters",
    "faust.tables.recovery:Recovery.on_recovery_completed",
)
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


async def _on_recovery_completed(self: Any, generation_id: int = 0) -> None:  # pragma: no cover
    # faust's Recovery.on_recovery_completed with the seek before the resume (fix 3).
    consumer = self.app.consumer
    self.log.info("Restore complete!")
    await self.app.on_rebalance_complete.send()
    self._set_recovery_ended()
    callback_coros = [
        asyncio.ensure_future(
            table.on_recovery_completed(
                self.actives_for_table[table], self.standbys_for_table[table]
            )
        )
        for table in self.tables.values()
    ]
    if callback_coros:
        await asyncio.wait(callback_coros)
    assignment = consumer.assignment()
    if self.app.consumer_generation_id != generation_id:
        self.log.warning(
            f"Recovery rebalancing again app id {self.app.consumer_generation_id} "
            f"param {generation_id}"
        )
        return
    if assignment:
        self.log.info("Seek stream partitions to committed offsets.")
        await self._wait(consumer.perform_seek(), timeout=self.app.conf.broker_request_timeout)
    consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
    self.completed.set()
    self.log.dev("Resume stream partitions")
    self.app.flow_control.resume()
    consumer.resume_flow()
    await self.app._fetcher.maybe_start()
    self.tables.on_actives_ready()
    if not self.app.assignor.assigned_standbys():
        self.tables.on_standbys_ready()
    self.app.on_rebalance_end()
    self.log.info("Worker ready")


def install() -> None:
    """Install the fixes (idempotent)."""
    faust_aiokafka.AIOKafkaConsumerThread._highwaters = _highwaters_from_broker  # type: ignore[method-assign]
    faust_recovery.asyncio = _RecoveryAsyncio("asyncio")  # type: ignore[attr-defined]
    faust_recovery.Recovery.on_recovery_completed = _on_recovery_completed  # type: ignore[method-assign]
