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
from streams.patches.eos_commit import RecordSender


class CommitHook:
    """Takes, sends and settles the outboxes of one app's partitions."""

    def __init__(
        self,
        changelog_topic: str,
        outbox_for: Callable[[int], Outbox | None],
        positions_for: Callable[[int], Mapping[str, int] | None],
    ) -> None:
        self.changelog_topic = changelog_topic
        self.outbox_for = outbox_for
        #: Next offset to process of each topic of a partition, as far as its agent got.
        self.positions_for = positions_for
        #: Batches sent in the open transaction of each transactional id (None: no transactions).
        self._sent: dict[str | None, list[tuple[Outbox, Batch]]] = {}
        #: Set when a send failed or processing broke: nothing may commit any more.
        self.poisoned: BaseException | None = None

    def clamp(self, offsets: Mapping[Any, int]) -> dict[Any, int]:
        """faust's chosen offsets, never past what the agent processed (dropped if unknown)."""
        clamped = {}
        for tp, offset in offsets.items():
            positions = self.positions_for(tp.partition)
            position = None if positions is None else positions.get(tp.topic)
            if position is not None:
                clamped[tp] = min(offset, position)
        return clamped

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
            by_topic: dict[str, list[tuple[bytes | None, bytes | None]]] = {}
            for out in batch.outputs:
                by_topic.setdefault(out.topic, []).append((out.key, out.value))
            for topic, records in by_topic.items():
                pending.append((None, sender(tid, topic, p, records)))
            self._sent.setdefault(tid, []).append((outbox, batch))
        last_offsets = await asyncio.gather(*(send for _, send in pending))
        for (of_batch, _), last in zip(pending, last_offsets, strict=True):
            if of_batch is not None:
                of_batch.changelog_offset = last

    def committed(self, tid: str | None) -> None:
        """The transaction `tid` committed: settle what was sent in it."""
        for outbox, batch in self._sent.pop(tid, []):
            outbox.settle(batch)

    def aborted(self, tid: str | None) -> None:
        """The transaction `tid` was aborted or its producer stopped: what it carried never
        reaches the local store (its partition was revoked; the next owner redoes it)."""
        for outbox, batch in self._sent.pop(tid, []):
            outbox.abandon(batch)
