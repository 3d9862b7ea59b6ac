"""Input order across one partition's input topics (pure): the contract's "Input order".

A record is judged only after every record of the other input topic's same partition that
was appended before it has been judged, as replay's file order stands for. faust hands the
worker each topic's records in order, but not the two topics in the order the broker appended
them: after a restart, a rebalance or under a backlog, an `order.delivered` could be read
after a later `aftersale.requested` of the same order, and the request judged without it.

So records are held here and released in append order. Append times are the records' Kafka
timestamps: the input topics use `message.timestamp.type=LogAppendTime` (topics/topics.yaml),
so a record's timestamp is the broker's clock when it was appended, growing along a partition.
Records rerouted from another partition (the reroute topic, `handler.py`) carry their original
append time, but arrive in the order they were rerouted, not appended.

A held record h of topic X may be judged when, for every other topic Y of the partition:

    Y holds a record too, appended after h (equal times: by topic rank, order-events first); or
    Y is past h by time: the last record judged from Y was appended after h (not for the
      reroute topic, whose times do not grow); or
    Y is past h by offsets: Y's position has reached its end offset in the first end-offset
      sample taken after h was appended (a sample whose end on X is past h's offset), so
      every record of Y appended before h has been read (`catchup.PartitionWatermark.passed`).

Otherwise h waits, for a record of Y or for the next sample (the timer samples end offsets and
releases what they allow). Its cost is latency: with one topic idle, a record waits for the
next sample (at most the timer's interval); records that do wait are judged in bulk when it
comes. Deadlines are unaffected: they already wait for the same samples.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import NamedTuple


class Held(NamedTuple):
    """An input record waiting for its turn."""

    topic: str
    offset: int
    #: Append time, seconds (the record's timestamp: LogAppendTime on the input topics).
    at: float
    key: bytes | None
    value: bytes
    #: Where a rerouted record was appended first: (topic, partition, offset); else None.
    origin: tuple[str, int, int] | None = None
    #: When the worker read it (the wall clock): its wait for its turn is the cost of the rule.
    read_at: datetime | None = None


#: passed(other_topic, topic, offset): whether every record of `other_topic` appended before
#: the record at `offset` of `topic` has been judged, by end-offset samples.
Passed = Callable[[str, str, int], bool]


class InputMerge:
    """The held records of one partition's inputs, released in append order."""

    def __init__(self, topics: Sequence[str], timed: Sequence[str]) -> None:
        """`topics` in rank order (ties in append time go to the earlier); `timed`: the topics
        whose append times grow along the partition (not the reroute topic)."""
        self.topics = tuple(topics)
        self._rank = {topic: rank for rank, topic in enumerate(self.topics)}
        self._timed = frozenset(timed)
        self._held: dict[str, deque[Held]] = {topic: deque() for topic in self.topics}
        #: Append time of the last record judged from each timed topic.
        self._last_at: dict[str, float] = {}

    def offer(self, record: Held) -> None:
        """A record read from one of the inputs, in its topic's order."""
        self._held[record.topic].append(record)

    def __len__(self) -> int:
        return sum(len(held) for held in self._held.values())

    def holds(self, topic: str) -> bool:
        """Whether records of `topic` are held."""
        return bool(self._held[topic])

    def ready(self, passed: Passed) -> Iterator[Held]:
        """Take the held records that may be judged now, in append order, one at a time: the
        caller judges each (moving the positions `passed` reads) before asking for the next."""
        held, rank = self._held, self._rank
        while True:
            heads = [queue[0] for queue in held.values() if queue]
            if not heads:
                return
            first = min(heads, key=lambda h: (h.at, rank[h.topic]))
            if len(heads) < len(held):  # some topic holds nothing: has it passed `first`?
                waiting = {h.topic for h in heads}
                for other in self.topics:
                    if other not in waiting and not self._past(other, first, passed):
                        return
            held[first.topic].popleft()
            if first.topic in self._timed:
                self._last_at[first.topic] = first.at
            yield first

    def _past(self, other: str, record: Held, passed: Passed) -> bool:
        last = self._last_at.get(other) if other in self._timed else None
        if last is not None and (last, self._rank[other]) > (record.at, self._rank[record.topic]):
            return True
        return passed(other, record.topic, record.offset)
