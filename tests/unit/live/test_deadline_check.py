"""The deadline timer (`streams.live.ticker.check_deadlines`) over fakes of faust and of the
side clients."""

from __future__ import annotations

from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from aiokafka.structs import TopicPartition

from streams.live.group_watermark import GroupWatermark
from streams.live.outbox import Output
from streams.live.runtime import Runtime
from streams.live.settings import Settings
from streams.live.ticker import check_deadlines
from streams.rules.clock import FakeClock
from streams.rules.policy import Policy
from tests.unit.factories import T0, FaustTable, event

INPUTS = ("o", "a", "r")
REVIEW = Policy().deadlines["merchant_review"]


class _AgentOnTheOtherSide:
    """Side clients whose tick is read and handled by the agent before the send returns."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.ticks: list[int] = []

    async def start_offsets(self, tps: Any) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, 0)

    async def end_offsets(self, tps: Any) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, 0)

    async def tick(self, topic: str, partition: int) -> None:
        self.ticks.append(partition)
        self.runtime.parts[partition].tick_sent = None  # what the agent does with a tick


def _app() -> Any:
    actives = {TopicPartition(topic, 0) for topic in INPUTS}
    return SimpleNamespace(
        rebalancing=False,
        tables=SimpleNamespace(actives_ready=True),
        assignor=SimpleNamespace(assigned_actives=lambda: actives),
    )


async def test_a_tick_handled_before_its_send_returns_does_not_hold_back_the_next() -> None:
    memory = type("MemoryStore", (), {"data": {}})()
    runtime = Runtime(Settings(partitions=1), Policy(), FaustTable(memory), INPUTS)
    runtime.part(0).engine.apply(event("aftersale.requested"), T0)
    clock = FakeClock(T0 + REVIEW + timedelta(seconds=1))  # the review deadline is due
    side = _AgentOnTheOtherSide(runtime)
    app = _app()
    released: list[int] = []

    def release(partition: int, now: datetime) -> None:
        released.append(partition)

    await check_deadlines(app, runtime, clock, "ticks", side, release)  # type: ignore[arg-type]
    assert side.ticks == [0]
    assert released == [0]  # held input records may go after each sample
    assert runtime.parts[0].tick_sent is None  # handled: the next check may tick again
    await check_deadlines(app, runtime, clock, "ticks", side, release)  # type: ignore[arg-type]
    assert side.ticks == [0, 0]


async def test_with_any_partitioner_a_deadline_waits_for_every_input_partition() -> None:
    memory = type("MemoryStore", (), {"data": {}})()
    group = GroupWatermark()
    runtime = Runtime(Settings(partitions=2), Policy(), FaustTable(memory), INPUTS, group=group)
    runtime.part(0).engine.apply(event("aftersale.requested"), T0)
    clock = FakeClock(T0 + REVIEW + timedelta(seconds=1))
    side = _AgentOnTheOtherSide(runtime)
    other = TopicPartition("a", 1)  # another worker's partition, 5 records unread by it
    done = {other: 0}

    async def ends(tps: Any) -> dict[TopicPartition, int]:
        return {tp: 5 if tp == other else 0 for tp in tps}

    async def committed(tps: Any) -> dict[TopicPartition, int]:
        return {tp: done.get(tp, 0) for tp in tps}

    side.end_offsets = ends  # type: ignore[method-assign]
    side.start_offsets = committed  # type: ignore[method-assign]
    app = _app()
    for _ in range(3):
        clock.advance(timedelta(seconds=0.2))
        await check_deadlines(app, runtime, clock, "ticks", side, lambda p, now: None)  # type: ignore[arg-type]
    assert side.ticks == []  # its own inputs are read, but a record may wait on a-1
    done[other] = 5  # the other worker has read a-1 (rerouting what it found) and committed
    clock.advance(timedelta(seconds=0.2))
    await check_deadlines(app, runtime, clock, "ticks", side, lambda p, now: None)  # type: ignore[arg-type]
    assert side.ticks == [0]
    assert runtime.safe_until(runtime.parts[0]) is not None


def _app_owning(*partitions: int) -> Any:
    actives = {TopicPartition(topic, p) for topic in INPUTS for p in partitions}
    return SimpleNamespace(
        rebalancing=False,
        tables=SimpleNamespace(actives_ready=True),
        assignor=SimpleNamespace(assigned_actives=lambda: actives),
    )


async def _run_owning_both(reroute_pending: bool) -> tuple[Runtime, _AgentOnTheOtherSide, Any]:
    """A worker that judges both partitions; a-1 holds 5 records, which it has judged, but no
    commit has happened yet (the group's committed offsets are all 0)."""
    memory = type("MemoryStore", (), {"data": {}})()
    runtime = Runtime(
        Settings(partitions=2), Policy(), FaustTable(memory), INPUTS, group=GroupWatermark()
    )
    runtime.part(0).engine.apply(event("aftersale.requested"), T0)
    clock = FakeClock(T0 + REVIEW + timedelta(seconds=1))
    side = _AgentOnTheOtherSide(runtime)
    asked: list[TopicPartition] = []

    async def ends(tps: Any) -> dict[TopicPartition, int]:
        return {tp: 5 if tp == TopicPartition("a", 1) else 0 for tp in tps}

    async def committed(tps: Any) -> dict[TopicPartition, int]:
        wanted = list(tps)
        asked.extend(wanted)
        return dict.fromkeys(wanted, 0)

    side.end_offsets = ends  # type: ignore[method-assign]
    side.start_offsets = committed  # type: ignore[method-assign]
    app = _app_owning(0, 1)
    await check_deadlines(app, runtime, clock, "ticks", side, lambda p, now: None)  # type: ignore[arg-type]
    runtime.parts[1].watermark.processed("a", 4)  # a-1 judged to its end, not yet committed
    if reroute_pending:  # ... one of its records rerouted to partition 0, not yet committed
        runtime.parts[1].outbox.emit_to(Output("r", b"o-1", b"{}", partition=0))
    asked.clear()
    for _ in range(3):
        clock.advance(timedelta(seconds=0.2))
        await check_deadlines(app, runtime, clock, "ticks", side, lambda p, now: None)  # type: ignore[arg-type]
    return runtime, side, (asked, app, clock)


async def test_partitions_judged_here_count_as_far_as_judged_without_waiting_for_a_commit() -> None:
    _, side, (asked, _, _) = await _run_owning_both(reroute_pending=False)
    assert set(side.ticks) == {0}  # ticked (again at each run: nothing fires here)
    assert asked == []  # every input partition is judged here: the broker is not asked


async def test_a_reroute_not_yet_committed_holds_the_group_until_it_commits() -> None:
    runtime, side, (asked, app, clock) = await _run_owning_both(reroute_pending=True)
    assert side.ticks == []  # partition 0's owner cannot read the reroute before its commit
    assert TopicPartition("a", 1) in asked  # a-1 counts as far as committed
    outbox = runtime.parts[1].outbox
    outbox.settle(outbox.take())  # the transaction with the reroute committed
    assert not outbox.sends_elsewhere
    clock.advance(timedelta(seconds=0.2))
    await check_deadlines(app, runtime, clock, "ticks", side, lambda p, now: None)  # type: ignore[arg-type]
    clock.advance(timedelta(seconds=0.2))
    await check_deadlines(app, runtime, clock, "ticks", side, lambda p, now: None)  # type: ignore[arg-type]
    assert set(side.ticks) == {0}  # ticked (again at each run: nothing fires here)
