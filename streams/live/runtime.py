"""What a worker keeps in memory per partition: engine, outbox, catch-up watermark.

A partition's due index (the engine's timer wheel) holds the due times of a window, from the
past to `AFTERSALE_DUE_WINDOW` ahead; with a RocksDB store every due time is also on disk
(`due_index.py`), and the window is read from there when the partition is assigned and moved
on as time passes (`widen`). A start reads only the entries due within the window, whatever
the number of open cases. (With the memory store, or an on-disk index that is not current,
the index is built by reading every order of the partition: about a second per 175,000.)

A rebalance revokes every partition of the worker (aiokafka's eager protocol) and most come
straight back, so the index of a revoked partition is parked rather than dropped:

    revoked:  park the wheel, the orders with changes not yet settled in the local store,
              and the changelog offset the local store is at
    assigned: the local store still at that offset (nobody else wrote the partition in
              between): reuse the wheel and re-index only those orders from their committed
              state; otherwise (or without an offset: the memory store) index it again

Reuse relies on the wheel holding, for every order whose state is settled in the local
store and due within the window, that state's due time; the orders the outbox cannot vouch
for (written, being committed, or in an aborted batch) are exactly the ones re-indexed. An
entry earlier than the order's due time is harmless: the engine fires an order only when its
own state says something is due, and then re-indexes it. Superseded entries stay in the
wheel until their 64-second slot comes round, as they do between rebalances.
"""

from __future__ import annotations

import gc
import logging
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from typing import Any, Final, cast

from streams.live.catchup import PartitionWatermark
from streams.live.due_index import DueIndex
from streams.live.group_watermark import GroupWatermark
from streams.live.merge import InputMerge
from streams.live.outbox import Batch, Outbox
from streams.live.settings import Settings
from streams.live.table_store import local_partition
from streams.rules.effects import Phase
from streams.rules.engine import Engine
from streams.rules.orders import next_due
from streams.rules.policy import Policy, Rule
from streams.rules.state_codec import decode_due
from streams.rules.timers import TimerWheel

log = logging.getLogger("aftersale.worker")

#: Due-index entries handed to a partition's wheel per timer run, at most: 10,000 take about
#: 40 ms, so a million deadlines due in the same second load over a hundred runs, while input
#: records are read and offsets committed between them.
WIDEN_CHUNK: Final = 10_000


@dataclass(slots=True)
class PartitionRuntime:
    """What a worker keeps in memory for one partition it owns as active."""

    engine: Engine
    outbox: Outbox
    watermark: PartitionWatermark
    #: Input records held until their turn in append order (`merge.py`).
    merge: InputMerge
    #: Committed open cases by phase, and running deadlines by rule (the metrics' gauges).
    phases: Counter[Phase] = field(default_factory=Counter)
    rules: Counter[Rule] = field(default_factory=Counter)
    tick_sent: float | None = None
    #: Processed positions at the previous timer run (to tell a stalled input from a busy one).
    last_positions: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Parked:
    """The due index of a revoked partition, kept in case the partition comes back."""

    wheel: TimerWheel
    #: Orders whose newest state was not yet in the local store: their entries may be wrong.
    unsettled: frozenset[str]
    changelog_offset: int
    #: The committed gauges' counts (what the local store holds).
    phases: Counter[Phase]
    rules: Counter[Rule]


@dataclass(slots=True)
class Runtime:
    """Per-partition engines, outboxes and watermarks of this worker."""

    settings: Settings
    policy: Policy
    table: Any
    #: The topics a partition judges, in rank order: order-events, aftersale-events, and the
    #: reroute topic (whose append times do not grow along a partition).
    inputs: tuple[str, ...]
    parts: dict[int, PartitionRuntime] = field(default_factory=dict)
    #: Partitions whose due index is complete and whose start offsets are known.
    ready: set[int] = field(default_factory=set)
    #: Bumped at every revocation and assignment: a timer run that awaited across one of
    #: them works on a stale picture and stops.
    generation: int = 0
    parked: dict[int, Parked] = field(default_factory=dict)
    #: Partitions whose runtime was created with a parked index that still holds.
    reused: set[int] = field(default_factory=set)
    #: Catch-up across every input partition (`group_watermark.py`); None: own inputs only.
    group: GroupWatermark | None = None

    def safe_until(self, part: PartitionRuntime) -> datetime | None:
        """Up to which instant `part`'s deadlines may be judged: every record written before it
        to the partition's own inputs read (`catchup.py`), and, with any partitioner, to every
        input partition judged or rerouted (`group_watermark.py`)."""
        own = part.watermark.safe_until()
        return own if self.group is None else self.group.safe_for(own)

    def part(self, partition: int) -> PartitionRuntime:
        runtime = self.parts.get(partition)
        if runtime is None:
            local = local_partition(self.table, partition, self.settings.partitions, self.policy)
            outbox = Outbox(partition, local)
            parked = self._unpark(partition, outbox)
            wheel = None if parked is None else parked.wheel
            engine = Engine(self.policy, store=outbox, wheel=wheel)
            merge = InputMerge(self.inputs, timed=self.inputs[:2])
            runtime = PartitionRuntime(engine, outbox, PartitionWatermark(self.inputs), merge)
            if parked is not None:
                runtime.phases, runtime.rules = parked.phases, parked.rules
            self.parts[partition] = runtime
        return runtime

    def adopt(self, policy: Policy) -> None:
        """Run `policy` from now on (a reload `reload_refusal` allows): every partition's engine
        and due index take it."""
        self.policy = policy
        for part in self.parts.values():
            part.engine.policy = policy
            index = getattr(part.outbox.local, "index", None)
            if index is not None:
                index.adopt(policy)

    def outbox(self, partition: int) -> Outbox | None:
        runtime = self.parts.get(partition)
        return None if runtime is None else runtime.outbox

    def committed(self, batch: Batch) -> None:
        """A partition's batch committed: its gauges' counts move (its counters are the
        metrics' business)."""
        part = self.parts.get(batch.partition)
        if part is not None:
            part.phases.update(batch.tally.phases)
            part.rules.update(batch.tally.rules)

    def open_cases(self) -> Counter[Phase]:
        """Committed open cases by phase over the partitions owned."""
        total: Counter[Phase] = Counter()
        for part in list(self.parts.values()):
            total.update(part.phases)
        return total

    def running_deadlines(self) -> Counter[Rule]:
        """Committed running deadlines by rule over the partitions owned."""
        total: Counter[Rule] = Counter()
        for part in list(self.parts.values()):
            total.update(part.rules)
        return total

    def positions(self) -> dict[int, Mapping[str, int]]:
        """Of each partition processed here, the next offset to process per topic: what its
        commits commit."""
        return {partition: part.watermark.positions for partition, part in self.parts.items()}

    def revoke(self, partitions: set[int]) -> None:
        """Revoked: drop these partitions' engines and outboxes, parking complete indexes."""
        for partition in partitions:
            part = self.parts.pop(partition, None)
            # complete: indexed here, or built on a parked index that still held
            if part is None or not (partition in self.ready or partition in self.reused):
                continue
            offset = part.outbox.local.changelog_offset()
            if offset is not None:
                unsettled = frozenset(part.outbox.unsettled())
                self.parked[partition] = Parked(
                    part.engine.wheel, unsettled, offset, part.phases, part.rules
                )
        self.ready -= partitions
        self.reused -= partitions
        self.generation += 1

    def keep_only(self, assigned: set[int]) -> None:
        """A new assignment: forget partitions not in it (another worker may own them now, so
        their in-memory engine would be stale if they came back later)."""
        self._keep(assigned)
        self.generation += 1

    def _keep(self, partitions: set[int]) -> None:
        for gone in set(self.parts) - partitions:
            del self.parts[gone]
        for gone in set(self.parked) - partitions:
            del self.parked[gone]
        self.ready &= partitions
        self.reused &= partitions

    def _unpark(self, partition: int, outbox: Outbox) -> Parked | None:
        """The parked index of `partition` if the local store has not moved since, with the
        orders that were unsettled re-indexed from their committed state; else None."""
        parked = self.parked.pop(partition, None)
        if parked is None or outbox.local.changelog_offset() != parked.changelog_offset:
            return None
        wheel = parked.wheel
        for order_id in parked.unsettled:
            state = outbox.get(order_id)
            wheel.schedule(order_id, None if state is None else state.next_due(self.policy))
        self.reused.add(partition)
        return parked

    def reassign(self, active: set[int], now: datetime | None = None) -> set[int]:
        """Drop revoked partitions; index the due times of newly assigned ones, those due
        before `now` + the window (None: all of them) where the store keeps a due index.

        The agent may already have created a partition's runtime (records can arrive before
        the first timer run); it still counts as new until it has been indexed here.
        """
        self._keep(active)
        new = active - self.ready
        for partition in sorted(new):
            started = time.perf_counter()
            part = self.part(partition)
            if partition in self.reused:
                log.info(
                    "partition %d: due index kept across the rebalance (%d scheduled)",
                    partition,
                    len(part.engine.wheel),
                )
                continue
            index = part.outbox.local.index
            if index is None or now is None:
                orders, due = rebuild_due_index(part, self.policy)
                log.info(
                    "partition %d: %d orders, %d with a due time, indexed in %.1f s",
                    partition,
                    orders,
                    due,
                    time.perf_counter() - started,
                )
                continue
            meta = index.current()
            rebuilt = meta is None
            if meta is None:
                meta = index.rebuild(part.outbox.local.items())
            wheel = part.engine.wheel
            self._hand_back(part, index, now)
            part.phases = Counter(cast(dict[Phase, int], meta.phases))
            part.rules = Counter(cast(dict[Rule, int], meta.rules))
            log.info(
                "partition %d: %d orders, %d with a due time, indexed in %.1f s (%s; "
                "%d due before %s held in memory%s)",
                partition,
                meta.orders,
                meta.due,
                time.perf_counter() - started,
                "rebuilt from the table" if rebuilt else "read from the on-disk index",
                len(wheel),
                (now + self.window).isoformat(timespec="seconds"),
                f", the rest handed over {WIDEN_CHUNK:,} per timer run"
                if wheel.horizon_key
                else "",
            )
        self.ready |= new
        return new

    @property
    def window(self) -> timedelta:
        return timedelta(seconds=self.settings.due_window)

    def widen(self, partition: int, now: datetime) -> None:
        """Move the partition's due window on once half of it has passed: the entries of the
        on-disk index due in the new part, and the orders not yet settled there."""
        part = self.parts.get(partition)
        index = None if part is None else part.outbox.local.index
        if part is None or index is None:
            return
        wheel = part.engine.wheel
        old = wheel.horizon
        if old is None or (not wheel.horizon_key and old - now > self.window / 2):
            return  # (a horizon with a key: the last run handed back only a chunk)
        if index.current() is None:  # not expected: every write keeps it current
            log.warning("partition %d: the on-disk due index is not current; rebuilt", partition)
            index.rebuild(part.outbox.local.items())
        self._hand_back(part, index, now, (old, wheel.horizon_key))

    def _hand_back(
        self,
        part: PartitionRuntime,
        index: DueIndex,
        now: datetime,
        after: tuple[datetime, str] | None = None,
    ) -> None:
        """Hand the wheel the index's entries from `after` (the old horizon; None: a start,
        into an empty wheel) to now + the window, at most WIDEN_CHUNK of them: when more are
        due (a promotion's million deadlines in one second), the horizon stops at the first
        entry not handed back, and the next timer run goes on from there. Loading them all
        at once held the event loop (no input read, no commit) for about a second per
        million."""
        wheel, end = part.engine.wheel, now + self.window
        start, start_key = after if after is not None else (None, "")
        entries = list(islice(index.due_before(end, start, start_key), WIDEN_CHUNK + 1))
        horizon, horizon_key = end, ""
        if len(entries) > WIDEN_CHUNK:
            horizon_key, horizon = entries.pop()
        if after is None:
            wheel.horizon, wheel.horizon_key = horizon, horizon_key
            wheel.load(entries)
        else:
            wheel.widen(horizon, entries, horizon_key)
        self._reindex_unsettled(part)

    def _reindex_unsettled(self, part: PartitionRuntime) -> None:
        """Schedule the orders whose newest state is not on disk at that state's due time."""
        outbox, wheel = part.outbox, part.engine.wheel
        for order_id in outbox.unsettled():
            state = outbox.get(order_id)
            wheel.schedule(order_id, None if state is None else state.next_due(self.policy))


def rebuild_due_index(part: PartitionRuntime, policy: Policy) -> tuple[int, int]:
    """Schedule every order of the partition at its next due time, and count its open cases
    by phase and running deadlines by rule; (orders, scheduled)."""
    phases: Counter[Phase] = Counter()
    rules: Counter[Rule] = Counter()
    orders = 0

    def entries() -> Iterator[tuple[str, datetime]]:
        nonlocal orders
        for order_id, state in part.outbox.states(decode_due):
            case, last_at = state.open, state.last_at
            orders += 1
            if case is not None:
                phases[case.phase] += 1
                if case.rule is not None and case.due_at is not None:
                    rules[case.rule] += 1
            due = next_due(case, last_at, policy)
            if due is not None:
                yield order_id, due

    # The cyclic collector would walk the growing index over and over (a fifth of the time
    # for a million orders): nothing built here refers to itself.
    collecting = gc.isenabled()
    gc.disable()
    try:
        part.engine.wheel.load(entries())
    finally:
        if collecting:
            gc.enable()
    part.phases, part.rules = phases, rules
    return orders, len(part.engine.wheel)
