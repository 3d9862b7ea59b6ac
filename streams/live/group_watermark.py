"""Catch-up safety across every input partition, for records a producer put elsewhere (pure).

The contract places a record by murmur2 of its order id, and a partition's catch-up
(`catchup.py`) covers that partition's inputs. A producer that partitions otherwise (kcat,
confluent-kafka and sarama by default) may put a record of an order of partition p on any
partition q. The worker that owns q reroutes it to p through `<app id>-reroute`, in q's
transaction, the one that commits q's input offsets. So, when the group's committed offset of
every input partition q has reached q's end offset sampled at instant T, every record written
anywhere before T is either judged or rerouted, and the reroutes are committed; a partition
that has then read its reroute input up to an end sampled after that point has read them all:
its deadlines up to T are safe. For the partitions a worker judges itself, "committed" may be
read as "judged here" (`ticker.judged_here`) while none of their reroutes waits for a commit:
each record before that position was judged here, or rerouted in a committed transaction. A
lone worker then never waits for its own commit interval, nor asks the broker.

    sample(T, ends of every input partition)         each timer run, with the partitions' own
    committed(at, committed offsets of the group)     fetched first in the run, answered at `at`
    safe_for(partition's own safe instant S)          the latest T settled by a fetch answered
                                                      at or before S (its own samples are
                                                      taken after the fetch, reroutes included)

A partition no live worker owns (its worker crashed, its session not over) holds back every
deadline of the group until its new owner has read it: the price of never acting while a
record that could change the case is unread somewhere. Deployments whose producers all use
murmur2 turn this off (`AFTERSALE_ANY_PARTITIONER=false`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

#: An input partition: (topic, partition).
Key = tuple[str, int]


@dataclass(slots=True)
class _Sample:
    at: datetime
    ends: dict[Key, int]


@dataclass(slots=True)
class GroupWatermark:
    """End-offset samples of every input partition, settled by the group's committed offsets."""

    keep: int = 64
    _samples: deque[_Sample] = field(default_factory=deque)
    #: (answered at, instant settled): a fetch of committed offsets answered at `answered at`
    #: showed every input partition committed past the ends sampled at `instant settled`.
    _settled: deque[tuple[datetime, datetime]] = field(default_factory=deque)

    def sample(self, at: datetime, ends: Mapping[Key, int]) -> None:
        """End offsets of every input partition, from a request sent at `at` (or later)."""
        self._samples.append(_Sample(at, dict(ends)))
        while len(self._samples) > self.keep:
            self._samples.popleft()  # a newer sample settles later instants anyway

    def committed(self, answered_at: datetime, offsets: Mapping[Key, int]) -> None:
        """The group's committed offsets (a partition never committed: its log start), from a
        request answered at `answered_at`."""
        settled = None
        while self._samples:
            sample = self._samples[0]
            if any(offsets.get(key, -1) < end for key, end in sample.ends.items()):
                break
            settled = self._samples.popleft().at
        if settled is not None:
            self._settled.append((answered_at, settled))
            while len(self._settled) > self.keep:
                # a partition whose own inputs are further behind than every entry left
                # waits for them to catch up to one: later, never unsafe
                self._settled.popleft()

    def safe_for(self, own_safe: datetime | None) -> datetime | None:
        """The latest instant safe for a partition whose own inputs (its reroute input among
        them) are read up to a sample taken at `own_safe`."""
        if own_safe is None:
            return None
        best = None
        for answered_at, instant in self._settled:
            if answered_at > own_safe:
                break
            best = instant  # sampled before the fetch answered: before own_safe too
        return best
