"""Catch-up safety: up to which instant a partition's deadlines may be judged (pure).

A deadline D on partition p may fire only once every record written to p's input partitions
before D has been read. The worker samples the input partitions' end offsets now and then;
a sample taken at instant T covers every record written before T. When the offsets the
worker has processed reach a sample's end offsets on every input partition, everything
written before T has been read, so deadlines up to T are safe:

    safe(p) = the latest sample time T whose end offsets the processed positions have reached

After an outage the first samples are taken when the worker starts (T = now) with the whole
backlog before them, so nothing fires until the backlog is read. A partition with no new
records keeps up trivially: its processed position equals its end offset.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(slots=True)
class _Sample:
    at: datetime
    ends: dict[str, int]


@dataclass(slots=True)
class PartitionWatermark:
    """Samples of end offsets and processed positions of one partition's input topics."""

    topics: tuple[str, ...]
    keep: int = 64
    #: Next offset to read per topic of the partition: processed, or known to hold nothing to
    #: process (the committed start, a gap of transaction markers). The agent also records the
    #: ticks topic here. Commits commit these (`CommitHook.processed`).
    positions: dict[str, int] = field(default_factory=dict)
    safe: datetime | None = None
    #: The end offsets of the newest sample.
    latest: dict[str, int] = field(default_factory=dict)
    _samples: deque[_Sample] = field(default_factory=deque)

    def processed(self, topic: str, offset: int) -> None:
        """A record at `offset` of `topic` (this partition) has been applied."""
        if offset + 1 > self.positions.get(topic, -1):
            self.positions[topic] = offset + 1

    def start_at(self, topic: str, position: int) -> None:
        """Where reading starts (the committed offset): everything before it was processed."""
        if position > self.positions.get(topic, -1):
            self.positions[topic] = position

    def sample(self, at: datetime, ends: Mapping[str, int]) -> None:
        """End offsets observed by a request sent at `at` (or later)."""
        if set(ends) != set(self.topics):
            raise ValueError(f"a sample needs end offsets of {self.topics}, got {sorted(ends)}")
        self.latest = dict(ends)
        self._samples.append(_Sample(at, self.latest))
        while len(self._samples) > self.keep:
            self._samples.popleft()
        self._advance()

    def behind(self) -> dict[str, tuple[int, int]]:
        """Topics whose processed position is short of the newest sample: (position, end).

        With transactional producers upstream, a commit marker takes the offset after a
        transaction's records and is never delivered, so an idle partition can stay one
        short forever; the worker checks such gaps for records (`SideClients.has_records`).
        """
        if not self._samples:
            return {}
        newest = self._samples[-1].ends
        return {
            t: (self.positions[t], end)
            for t, end in newest.items()
            if t in self.positions and self.positions[t] < end
        }

    def lag(self) -> dict[str, int]:
        """Records between each topic's position and its end offset in the newest sample."""
        if not self._samples:
            return {}
        positions = self.positions
        return {
            t: end - positions[t] for t, end in self._samples[-1].ends.items() if t in positions
        }

    def skip_to(self, topic: str, position: int) -> None:
        """Nothing to process before `position` (the gap held only transaction markers)."""
        self.start_at(topic, position)

    def passed(self, other: str, topic: str, offset: int) -> bool:
        """Whether every record of `other` appended before the record at `offset` of `topic`
        has been read: true once `other`'s position reaches its end offset in the first sample
        taken after that record was appended (one whose end on `topic` is past `offset`).

        A sample whose ends `other` has reached on every topic is dropped (`_advance`), but
        one that covers an unread record of `topic` cannot have been: its `topic` end is not
        reached yet. So the first covering sample is still here, if any was taken."""
        for sample in self._samples:
            if sample.ends[topic] > offset:
                return self.positions.get(other, -1) >= sample.ends[other]
        return False

    def safe_until(self) -> datetime | None:
        """The latest instant up to which every record written before it has been read."""
        self._advance()
        return self.safe

    def _advance(self) -> None:
        positions = self.positions
        while self._samples:
            sample = self._samples[0]
            if any(positions.get(t, -1) < end for t, end in sample.ends.items()):
                return
            self._samples.popleft()
            if self.safe is None or sample.at > self.safe:
                self.safe = sample.at
