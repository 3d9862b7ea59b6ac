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

4. Changelog records skipped as aborted. In exactly-once mode, after idle waits, faust's
   recovery loop (`detect_aborted_tx` in `_slurp_changelogs`) takes a changelog partition as
   read to its high-water once the consumer's position is there, assuming what lies between
   is commit markers and aborted records. The loop runs on across rebalances, so that check
   also ran after a new assignment and before the new recovery had built its high-waters
   and sought its partitions: it compared the new start offsets with the old high-waters and
   a position that belonged to no recovery, moved the start offsets up to the high-waters,
   and the new recovery began there, skipping every record in between. Seen in the fault
   campaign (tests/chaos) after broker restarts, which end in rebalances: a worker took over
   a partition whose changelog it was 48 records behind, recovered none of them, and fired
   deadlines its predecessor had fired (duplicates) and cases that had moved on (wrong
   actions). Here the position (which only that check asks for,
   `ThreadDelegateConsumer.position`) answers "not there yet" unless the recovery of the
   current generation has sought its partitions and no new one is pending.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Mapping
from typing import Any, Final, TypeVar

from faust.tables import recovery as faust_recovery
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka

#: The upstream methods this module replaces (fingerprinted in `upstream.py`).
REPLACES: Final = (
    "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread._highwaters",
    "faust.tables.recovery:Recovery.on_recovery_completed",
    "faust.transport.consumer:ThreadDelegateConsumer.position",
    "faust.tables.recovery:Recovery.on_rebalance",  # wrapped
    "faust.tables.recovery:Recovery._seek_offsets",  # wrapped
)
#: The upstream methods whose behaviour it changes in place (their waits), also fingerprinted.
ALTERS: Final = ("faust.tables.recovery:Recovery._slurp_changelogs",)
#: The attribute of faust's Recovery naming the generation whose active changelog partitions
#: have been sought for reading (None: none yet since the last rebalance).
SOUGHT_FOR: Final = "_aftersale_sought_for"
#: The position fix 4 reports while no recovery of the current generation is reading.
NOT_THERE: Final = -1
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


_faust_on_rebalance = faust_recovery.Recovery.on_rebalance
_faust_seek_offsets = faust_recovery.Recovery._seek_offsets
_faust_position = faust_consumer.ThreadDelegateConsumer.position


async def _on_rebalance(self: Any, *args: Any, **kwargs: Any) -> None:
    # a new assignment: no recovery is reading for it until it has sought (fix 4)
    setattr(self, SOUGHT_FOR, None)
    await _faust_on_rebalance(self, *args, **kwargs)


async def _seek_offsets(self: Any, consumer: Any, tps: Any, offsets: Any, title: str) -> None:
    await _faust_seek_offsets(self, consumer, tps, offsets, title)
    if title == "active":
        setattr(self, SOUGHT_FOR, self._generation_id)


def reading(recovery: Any, generation_id: int) -> bool:
    """Whether `recovery` is reading changelogs for generation `generation_id`: its active
    partitions sought for it, and no new recovery pending."""
    sought_for = getattr(recovery, SOUGHT_FOR, None)
    return sought_for == generation_id and not recovery.signal_recovery_start.is_set()


async def _position(self: Any, tp: Any) -> int | None:
    # faust's ThreadDelegateConsumer.position, asked only by recovery's aborted-transaction
    # check: a position only while the current generation's recovery reads (fix 4)
    if not reading(self.app.tables.recovery, self.app.consumer_generation_id):
        return NOT_THERE
    position: int | None = await _faust_position(self, tp)
    return position


def install() -> None:
    """Install the fixes (idempotent)."""
    faust_aiokafka.AIOKafkaConsumerThread._highwaters = _highwaters_from_broker  # type: ignore[method-assign]
    faust_recovery.asyncio = _RecoveryAsyncio("asyncio")  # type: ignore[attr-defined]
    faust_recovery.Recovery.on_recovery_completed = _on_recovery_completed  # type: ignore[method-assign]
    faust_recovery.Recovery.on_rebalance = _on_rebalance  # type: ignore[method-assign]
    faust_recovery.Recovery._seek_offsets = _seek_offsets  # type: ignore[method-assign]
    faust_consumer.ThreadDelegateConsumer.position = _position  # type: ignore[method-assign]
