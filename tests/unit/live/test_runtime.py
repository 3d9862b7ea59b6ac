"""Per-partition runtime: the due index across a rebalance (parked, reused or rebuilt)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from streams.live import runtime as runtime_module
from streams.live.runtime import PartitionRuntime, Runtime
from streams.live.settings import Settings
from streams.live.table_store import RocksPartition, local_partition
from streams.rules.effects import Action
from streams.rules.policy import Policy
from streams.rules.state_codec import encode
from tests.unit.factories import T0, FaustRocksStore, FaustTable, event

#: Deadlines only: the wheel then holds one due time per open case.
POLICY = Policy(reminders={"merchant_review": (), "buyer_return": (), "merchant_receipt": ()})
REVIEW = POLICY.deadlines["merchant_review"]
H = timedelta(hours=1)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FaustRocksStore]:
    rocks = FaustRocksStore(tmp_path)
    yield rocks
    rocks.close()


def _runtime(table_store: object) -> Runtime:
    return Runtime(Settings(partitions=1), POLICY, FaustTable(table_store), ("o", "a"))


def _owned_with_o1_requested_and_committed(runtime: Runtime) -> PartitionRuntime:
    """Partition 0 indexed, with o-1's request committed at changelog offset 5."""
    runtime.reassign({0})
    part = runtime.part(0)
    part.engine.apply(event("aftersale.requested", order_id="o-1"), T0)
    batch = part.outbox.take()
    batch.changelog_offset = 5
    part.outbox.settle(batch)
    return part


def _owned_with_one_settled_and_two_unsettled_changes(runtime: Runtime) -> None:
    """o-1 requested and committed; then, not committed: o-2 requested and o-1 approved."""
    part = _owned_with_o1_requested_and_committed(runtime)
    part.engine.apply(event("aftersale.requested", timedelta(hours=1), order_id="o-2"), T0)
    part.engine.apply(event("aftersale.approved", timedelta(hours=2), order_id="o-1"), T0)
    assert part.engine.next_wakeup() == T0 + timedelta(hours=1) + REVIEW  # o-2


def _rebalance(runtime: Runtime) -> None:
    """A rebalance that gives partition 0 straight back (revoked, then assigned)."""
    runtime.revoke({0})
    runtime.keep_only({0})


def _no_full_rebuild(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> tuple[int, int]:
        raise AssertionError("the due index was rebuilt from the whole table")

    monkeypatch.setattr(runtime_module, "rebuild_due_index", refuse)


def test_a_partition_back_unchanged_keeps_its_index_and_reindexes_unsettled_orders(
    store: FaustRocksStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = _runtime(store)
    _owned_with_one_settled_and_two_unsettled_changes(runtime)
    wheel = runtime.part(0).engine.wheel
    _rebalance(runtime)
    _no_full_rebuild(monkeypatch)
    assert runtime.reassign({0}) == {0}
    engine = runtime.part(0).engine
    assert engine.wheel is wheel
    # what was not committed is gone: o-2 unscheduled, o-1 back at its review deadline
    assert len(engine.wheel) == 1
    assert engine.next_wakeup() == T0 + REVIEW
    fired = engine.advance(T0 + REVIEW)
    actions = [e for e in fired if isinstance(e, Action)]
    assert [(a.type, a.order_id) for a in actions] == [("auto_approve", "o-1")]


def test_the_agent_creating_the_runtime_first_still_gets_the_parked_index(
    store: FaustRocksStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = _runtime(store)
    _owned_with_one_settled_and_two_unsettled_changes(runtime)
    _rebalance(runtime)
    _no_full_rebuild(monkeypatch)
    runtime.part(0)  # a record arrived before the timer's first run
    runtime.reassign({0})
    assert runtime.part(0).engine.next_wakeup() == T0 + REVIEW


def test_a_partition_written_elsewhere_meanwhile_is_indexed_in_full(
    store: FaustRocksStore,
) -> None:
    runtime = _runtime(store)
    _owned_with_one_settled_and_two_unsettled_changes(runtime)
    wheel = runtime.part(0).engine.wheel
    runtime.revoke({0})
    assert runtime.parked[0].changelog_offset == 5
    # another worker owned the partition for a while; recovery brought its changes in
    elsewhere = _runtime(store).part(0).engine
    elsewhere.apply(event("aftersale.requested", timedelta(hours=3), order_id="o-3"), T0)
    state = elsewhere.store["o-3"]
    local = local_partition(FaustTable(store), 0, 1, POLICY)
    local.write({b"o-3": encode(state)}, changelog_offset=9)
    runtime.keep_only({0})
    runtime.reassign({0})
    engine = runtime.part(0).engine
    assert engine.wheel is not wheel
    assert len(engine.wheel) == 2  # o-1 and o-3, both read from the table
    fired = engine.advance(T0 + timedelta(hours=3) + REVIEW)
    assert sorted(a.order_id for a in fired if isinstance(a, Action)) == ["o-1", "o-3"]


def test_a_partition_assigned_elsewhere_drops_its_parked_index(store: FaustRocksStore) -> None:
    runtime = _runtime(store)
    _owned_with_one_settled_and_two_unsettled_changes(runtime)
    runtime.revoke({0})
    assert set(runtime.parked) == {0}
    runtime.keep_only(set())
    assert runtime.parked == {}


def test_the_memory_store_keeps_no_offset_so_nothing_is_parked() -> None:
    memory = type("MemoryStore", (), {"data": {}})()
    runtime = _runtime(memory)
    runtime.reassign({0})
    runtime.part(0).engine.apply(event("aftersale.requested", order_id="o-1"), T0)
    runtime.revoke({0})
    assert runtime.parked == {}


def test_orders_of_an_aborted_batch_are_reindexed_when_the_index_is_reused(
    store: FaustRocksStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = _runtime(store)
    part = _owned_with_o1_requested_and_committed(runtime)
    part.engine.apply(event("aftersale.approved", timedelta(hours=1), order_id="o-1"), T0)
    part.outbox.abandon(part.outbox.take())  # its transaction aborted: o-1 is back at review
    _rebalance(runtime)
    _no_full_rebuild(monkeypatch)
    runtime.reassign({0})
    assert runtime.part(0).engine.next_wakeup() == T0 + REVIEW


def test_an_index_reused_by_the_agent_is_parked_again_before_the_timer_ran(
    store: FaustRocksStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = _runtime(store)
    _owned_with_one_settled_and_two_unsettled_changes(runtime)
    wheel = runtime.part(0).engine.wheel
    _rebalance(runtime)
    runtime.part(0)  # the agent got a record; then another rebalance, before `reassign`
    _rebalance(runtime)
    _no_full_rebuild(monkeypatch)
    runtime.reassign({0})
    assert runtime.part(0).engine.wheel is wheel
    assert runtime.part(0).engine.next_wakeup() == T0 + REVIEW


def _windowed(table_store: object, window_s: float = 3600.0) -> Runtime:
    settings = Settings(partitions=1, due_window=window_s)
    return Runtime(settings, POLICY, FaustTable(table_store), ("o", "a"))


def _requests_committed(runtime: Runtime, hours: list[int]) -> None:
    """Requests of o-<h> at T0 + h hours, committed: each due REVIEW later."""
    _commit_requests(runtime, {f"o-{h}": timedelta(hours=h) for h in hours})


def _commit_requests(runtime: Runtime, requests: dict[str, timedelta]) -> None:
    """A request of each order at T0 + its offset, applied at T0 and committed."""
    part = runtime.part(0)
    for order_id, at in requests.items():
        part.engine.apply(event("aftersale.requested", at, order_id=order_id), T0)
    batch = part.outbox.take()
    batch.changelog_offset = 10
    part.outbox.settle(batch)


def test_a_start_reads_only_the_window_from_the_on_disk_index(
    store: FaustRocksStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _requests_committed(_windowed(store), [0, 1, 2, 5])
    restarted = _windowed(store)  # a new process over the same store
    _no_full_rebuild(monkeypatch)
    restarted.reassign({0}, now=T0 + REVIEW - timedelta(minutes=30))
    part = restarted.part(0)
    assert len(part.engine.wheel) == 1  # o-0; the rest are due after the window
    assert part.phases == {"review": 4}  # the gauges' counts from the index's meta
    # the window moves on once half of it has passed, and brings the next due times in
    restarted.widen(0, T0 + REVIEW - timedelta(minutes=5))
    assert len(part.engine.wheel) == 1  # not yet half way
    restarted.widen(0, T0 + REVIEW + timedelta(hours=1, minutes=30))
    fired = part.engine.advance(T0 + REVIEW + timedelta(hours=2))
    assert sorted(a.order_id for a in fired if isinstance(a, Action)) == ["o-0", "o-1", "o-2"]
    restarted.widen(0, T0 + REVIEW + timedelta(hours=4, minutes=30))
    fired = part.engine.advance(T0 + REVIEW + timedelta(hours=5))
    assert [a.order_id for a in fired if isinstance(a, Action)] == ["o-5"]


def test_a_change_due_past_the_window_comes_back_with_it_before_it_is_committed(
    store: FaustRocksStore,
) -> None:
    runtime = _windowed(store)
    runtime.reassign({0}, now=T0)
    part = runtime.part(0)
    later = event("aftersale.requested", timedelta(hours=3), order_id="o-3")
    part.engine.apply(later, T0 + timedelta(hours=3))
    assert len(part.engine.wheel) == 0  # due past the window: not held
    part.outbox.take()  # being committed, not yet settled
    runtime.widen(0, T0 + timedelta(hours=3) + REVIEW - timedelta(minutes=10))
    assert part.engine.next_wakeup() == T0 + timedelta(hours=3) + REVIEW


def test_an_index_that_is_not_current_is_rebuilt_at_the_start(store: FaustRocksStore) -> None:
    _requests_committed(_windowed(store), [0, 1])
    local = local_partition(FaustTable(store), 0, 1, POLICY)
    assert isinstance(local, RocksPartition)
    local.db.put(local.offset_key, b"12")  # the store moved on without its index
    restarted = _windowed(store)
    restarted.reassign({0}, now=T0 + REVIEW + timedelta(minutes=30))
    assert local.index.current() is not None
    assert len(restarted.part(0).engine.wheel) == 2


def _burst_committed(runtime: Runtime, orders: int) -> None:
    """Requests of b-0..b-<orders-1> all at T0, committed: all due at T0 + REVIEW."""
    _commit_requests(runtime, {f"b-{n:02}": timedelta(0) for n in range(orders)})


def test_deadlines_due_in_the_same_instant_come_back_a_chunk_per_timer_run(
    store: FaustRocksStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime_module, "WIDEN_CHUNK", 4)
    _burst_committed(_windowed(store), 10)
    restarted = _windowed(store)
    _no_full_rebuild(monkeypatch)
    due = T0 + REVIEW
    restarted.reassign({0}, now=due - timedelta(minutes=50))
    part = restarted.part(0)
    wheel = part.engine.wheel
    held = [len(wheel)]
    assert (wheel.horizon, wheel.horizon_key) == (due, "b-04")  # cut within the instant
    restarted.widen(0, due - timedelta(minutes=49))  # not half way, but a chunk is pending
    held.append(len(wheel))
    restarted.widen(0, due - timedelta(minutes=48))
    held.append(len(wheel))
    assert held == [4, 8, 10]
    assert (wheel.horizon, wheel.horizon_key) == (
        due - timedelta(minutes=48) + restarted.window,
        "",
    )
    fired = part.engine.advance(due)
    actions = [a.order_id for a in fired if isinstance(a, Action)]
    assert actions == [f"b-{n:02}" for n in range(10)]  # each once, in the index's order


def test_a_burst_already_due_is_handed_back_and_fired_a_chunk_at_a_time(
    store: FaustRocksStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A start after the burst's instant: what is handed back fires at once, the rest follows.
    monkeypatch.setattr(runtime_module, "WIDEN_CHUNK", 3)
    _burst_committed(_windowed(store), 7)
    restarted = _windowed(store)
    now = T0 + REVIEW + timedelta(seconds=1)
    restarted.reassign({0}, now=now)
    part = restarted.part(0)
    fired: list[str] = []
    for _ in range(5):
        fired += [a.order_id for a in part.engine.advance(now) if isinstance(a, Action)]
        restarted.widen(0, now)
    assert fired == [f"b-{n:02}" for n in range(7)]
    assert part.engine.next_wakeup() is None


def test_a_policy_taken_while_running_reaches_every_engine_and_keeps_the_index_current(
    store: FaustRocksStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = _runtime(store)
    part = _owned_with_o1_requested_and_committed(runtime)
    later = Policy(
        reminders=POLICY.reminders,
        versions=(replace(POLICY, effective_from=T0 + REVIEW, deadlines={"merchant_review": H}),),
    )
    runtime.adopt(later)
    assert part.engine.policy is later
    local = part.outbox.local
    assert isinstance(local, RocksPartition)
    assert local.index.current() is not None  # still current, under the new fingerprint
    # a case requested under the new version runs to its deadline, committed and indexed
    part.engine.apply(event("aftersale.requested", REVIEW, order_id="o-2"), T0 + REVIEW)
    batch = part.outbox.take()
    batch.changelog_offset = 6
    part.outbox.settle(batch)
    assert list(local.index.due_before(T0 + 10 * REVIEW)) == [
        ("o-1", T0 + REVIEW),
        ("o-2", T0 + REVIEW + H),
    ]
    # a restart with the new policy finds the index current, and uses it as it is
    reopened = local_partition(FaustTable(store), 0, 1, later)
    assert isinstance(reopened, RocksPartition)
    assert reopened.index.current() is not None
    _no_full_rebuild(monkeypatch)
    restarted = Runtime(Settings(partitions=1), later, FaustTable(store), ("o", "a"))
    restarted.reassign({0}, now=T0 + REVIEW - timedelta(minutes=1))
    assert restarted.part(0).engine.next_wakeup() == T0 + REVIEW
