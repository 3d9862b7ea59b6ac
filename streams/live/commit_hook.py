"""The worker's side of exactly-once commits: which batches ride in which transaction.

At every offset commit (`streams.patches.eos_commit` routes faust's commit here) the hook
clamps faust's chosen offsets to what the agent has processed, takes each of those
partitions' outbox, sends it under the partition's transaction, and settles it into the
local store only once that transaction has committed (or drops it when it was aborted).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any

from streams.live.outbox import Batch, Outbox
from streams.patches.eos_commit import RecordSender, SendRecord


class CommitHook:
    """Takes, sends and settles the outboxes of one app's partitions."""

    def __init__(
        self,
        changelog_topic: str,
        outbox_for: Callable[[int], Outbox | None],
        positions: Callable[[], Mapping[int, Mapping[str, int]]],
        on_committed: Callable[[Batch], None] | None = None,
    ) -> None:
        self.changelog_topic = changelog_topic
        self.outbox_for = outbox_for
        #: Of each partition processed here, the next offset to process of each of its topics.
        self.positions = positions
        #: Told of each batch once it is in the local store (the metrics count it then).
        self.on_committed = on_committed
        #: Batches sent in the open transaction of each transactional id (None: no transactions).
        self._sent: dict[str | None, list[tuple[Outbox, Batch]]] = {}
        #: Set when a send failed or processing broke: nothing may commit any more.
        self.poisoned: BaseException | None = None

    def processed(self) -> dict[tuple[str, int], int]:
        """The offsets to commit: of each (topic, partition) this worker processes, the next
        offset to process. Not faust's: faust counts a record done once the agent has seen
        it, but an input record may be held for its turn (`merge.py`) and judged later, and a
        rebalance can clear a queue the agent never read."""
        return {
            (topic, partition): position
            for partition, positions in self.positions().items()
            for topic, position in positions.items()
        }

    def take(self, partitions: Iterable[int]) -> list[tuple[Outbox, Batch]]:
        """The pending batch of each partition (synchronous: call right after choosing offsets)."""
        taken = []
        for partition in sorted(set(partitions)):
            outbox = self.outbox_for(partition)
            if outbox is not None and outbox.pending:
                taken.append((outbox, outbox.take()))
        return taken

    async def send(
        self,
        sender: RecordSender,
        tids: Mapping[int, str | None],
        taken: list[tuple[Outbox, Batch]],
    ) -> None:
        """Send the batches under each partition's transaction; remember them until it ends."""
        pending: list[tuple[Batch | None, Coroutine[Any, Any, int]]] = []
        for outbox, batch in taken:
            tid, p = tids[batch.partition], batch.partition
            if batch.states:
                pending.append(
                    (batch, sender(tid, self.changelog_topic, p, list(batch.states.items())))
                )
            targets: dict[tuple[str, int], list[SendRecord]] = {}
            for out in batch.outputs:
                if out.partition is None:  # the common case: this partition, stamped now
                    targets.setdefault((out.topic, p), []).append((out.key, out.value))
                else:
                    record = (out.key, out.value, out.timestamp_ms, out.headers)
                    targets.setdefault((out.topic, out.partition), []).append(record)
            for (topic, partition), records in targets.items():
                pending.append((None, sender(tid, topic, partition, records)))
            self._sent.setdefault(tid, []).append((outbox, batch))
        last_offsets = await asyncio.gather(*(send for _, send in pending))
        for (of_batch, _), last in zip(pending, last_offsets, strict=True):
            if of_batch is not None:
                of_batch.changelog_offset = last

    def committed(self, tid: str | None) -> None:
        """The transaction `tid` committed: settle what was sent in it."""
        for outbox, batch in self._sent.pop(tid, []):
            outbox.settle(batch)
            if self.on_committed is not None:
                self.on_committed(batch)

    def aborted(self, tid: str | None) -> None:
        """The transaction `tid` was aborted or its producer stopped: what it carried never
        reaches the local store (its partition was revoked; the next owner redoes it)."""
        for outbox, batch in self._sent.pop(tid, []):
            outbox.abandon(batch)
