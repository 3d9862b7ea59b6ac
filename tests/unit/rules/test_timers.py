"""TimerWheel: keys come back in (due time, key) order, superseded entries never."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.rules.timers import TimerWheel

T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
FAR = T0 + timedelta(days=3650)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def drain(wheel: TimerWheel, now: datetime = FAR) -> list[tuple[str, datetime]]:
    out: list[tuple[str, datetime]] = []
    while (item := wheel.pop_next(now)) is not None:
        out.append(item)
    return out


def test_empty_wheel() -> None:
    wheel = TimerWheel()
    assert len(wheel) == 0
    assert wheel.peek() is None
    assert wheel.pop_next(FAR) is None


def test_pops_in_time_order_across_many_slots() -> None:
    rng = random.Random(7)
    wheel = TimerWheel()
    due = {f"k{n}": at(rng.uniform(0, 5000)) for n in range(500)}
    for key, when in due.items():
        wheel.schedule(key, when)
    assert len(wheel) == 500
    popped = drain(wheel)
    assert popped == sorted(due.items(), key=lambda item: item[1])
    assert len(wheel) == 0


def test_sub_second_times_within_one_slot_are_ordered() -> None:
    wheel = TimerWheel()
    wheel.schedule("late", at(0.9))
    wheel.schedule("early", at(0.1))
    wheel.schedule("middle", at(0.5))
    assert [key for key, _ in drain(wheel)] == ["early", "middle", "late"]


def test_ties_pop_in_key_order_whatever_the_scheduling_order() -> None:
    wheel = TimerWheel()
    keys = [f"k{n:02d}" for n in range(20)]
    random.Random(3).shuffle(keys)
    for key in keys:
        wheel.schedule(key, at(60))
    wheel.schedule("before", at(59.999))
    assert [key for key, _ in drain(wheel)] == ["before", *sorted(keys)]


def test_equal_instants_in_other_offsets_are_ties() -> None:
    wheel = TimerWheel()
    wheel.schedule("utc", at(60))
    wheel.schedule("china", at(60).astimezone(timezone(timedelta(hours=8))))
    assert [key for key, _ in drain(wheel)] == ["china", "utc"]


def test_rescheduling_supersedes_the_old_time() -> None:
    wheel = TimerWheel()
    wheel.schedule("a", at(10))
    wheel.schedule("b", at(20))
    wheel.schedule("a", at(30))
    assert len(wheel) == 2
    assert wheel.peek() == at(20)
    assert drain(wheel) == [("b", at(20)), ("a", at(30))]


def test_rescheduling_earlier_supersedes_too() -> None:
    wheel = TimerWheel()
    wheel.schedule("a", at(3000))
    wheel.schedule("b", at(20))
    wheel.schedule("a", at(10))
    assert drain(wheel) == [("a", at(10)), ("b", at(20))]


def test_rescheduling_to_the_same_time_keeps_the_key_order() -> None:
    wheel = TimerWheel()
    wheel.schedule("b", at(10))
    wheel.schedule("a", at(10))
    wheel.schedule("b", at(10))
    wheel.schedule("a", at(10))
    assert drain(wheel) == [("a", at(10)), ("b", at(10))]


def test_unschedule_with_none_and_discard() -> None:
    wheel = TimerWheel()
    wheel.schedule("a", at(10))
    wheel.schedule("b", at(20))
    wheel.schedule("c", at(30))
    wheel.schedule("a", None)
    wheel.discard("c")
    wheel.discard("never-scheduled")
    wheel.schedule("never-scheduled", None)
    assert len(wheel) == 1
    assert wheel.peek() == at(20)
    assert drain(wheel) == [("b", at(20))]


def test_a_key_can_come_back_after_discard_or_pop() -> None:
    wheel = TimerWheel()
    wheel.schedule("a", at(10))
    wheel.discard("a")
    wheel.schedule("a", at(50))
    assert wheel.pop_next(at(10)) is None
    assert wheel.pop_next(at(50)) == ("a", at(50))
    wheel.schedule("a", at(5))
    assert drain(wheel) == [("a", at(5))]


def test_pop_next_waits_for_now() -> None:
    wheel = TimerWheel()
    wheel.schedule("a", at(10))
    assert wheel.pop_next(at(9.999999)) is None
    assert len(wheel) == 1
    assert wheel.peek() == at(10)
    assert wheel.pop_next(at(10)) == ("a", at(10))  # due at exactly now
    assert wheel.pop_next(FAR) is None
    assert len(wheel) == 0


def test_earlier_time_into_the_slot_being_drained_comes_out_in_order() -> None:
    wheel = TimerWheel()
    for n in range(5):
        wheel.schedule(f"k{n}", at(100 + n * 0.1))
    wheel.schedule("later", at(200))
    assert wheel.pop_next(at(100.15)) == ("k0", at(100))
    assert wheel.pop_next(at(100.15)) == ("k1", at(100.1))
    # The slot of t=100 is being drained: schedule into it and before it.
    wheel.schedule("same-slot-earlier", at(100.05))
    wheel.schedule("same-slot-later", at(100.95))
    wheel.schedule("previous-slot", at(50))
    wheel.schedule("k3", at(100.01))
    assert drain(wheel) == [
        ("previous-slot", at(50)),
        ("k3", at(100.01)),
        ("same-slot-earlier", at(100.05)),
        ("k2", at(100.2)),
        ("k4", at(100.4)),
        ("same-slot-later", at(100.95)),
        ("later", at(200)),
    ]


def test_scheduling_between_drained_slot_and_next_slot() -> None:
    wheel = TimerWheel()
    wheel.schedule("a", at(100))
    wheel.schedule("c", at(300))
    assert wheel.pop_next(at(100)) == ("a", at(100))
    wheel.schedule("b", at(200))
    wheel.schedule("a2", at(100.5))
    assert drain(wheel) == [("a2", at(100.5)), ("b", at(200)), ("c", at(300))]


def test_len_counts_live_keys() -> None:
    wheel = TimerWheel()
    for n in range(10):
        wheel.schedule(f"k{n}", at(n))
    for n in range(10):
        wheel.schedule(f"k{n}", at(100 - n))  # supersede all
    assert len(wheel) == 10
    wheel.discard("k0")
    assert len(wheel) == 9
    assert wheel.pop_next(at(95)) == ("k9", at(91))
    assert len(wheel) == 8


def test_floor_is_a_lower_bound_that_peek_makes_exact() -> None:
    wheel = TimerWheel()
    assert wheel.floor > FAR  # nothing scheduled: nothing can be due
    wheel.schedule("a", at(30))
    wheel.schedule("b", at(20))
    assert wheel.floor == at(20)
    wheel.schedule("b", at(40))  # superseded: the floor stays low until the wheel looks
    assert wheel.floor == at(20)
    assert wheel.pop_next(at(25)) is None
    assert wheel.floor == at(30)
    assert wheel.pop_next(at(30)) == ("a", at(30))
    wheel.schedule("c", at(35))
    assert wheel.peek() == at(35)
    assert wheel.floor == at(35)
    assert drain(wheel) == [("c", at(35)), ("b", at(40))]
    assert wheel.peek() is None
    assert wheel.floor > FAR


def test_peek_does_not_remove() -> None:
    wheel = TimerWheel()
    wheel.schedule("a", at(10))
    wheel.schedule("b", at(5))
    assert wheel.peek() == at(5)
    assert wheel.peek() == at(5)
    assert len(wheel) == 2
    wheel.discard("b")
    assert wheel.peek() == at(10)


# --- property: the wheel behaves like a dict scanned for its minimum ---------------------------

keys = st.sampled_from([f"k{n}" for n in range(8)])
# Times in tenths of a second over a few seconds (many share a slot, many tie exactly), and
# times 16 s apart over ten minutes (they span several slots).
instants = st.one_of(
    st.integers(0, 60).map(lambda tenths: at(tenths / 10)),
    st.integers(0, 40).map(lambda n: at(n * 16)),
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("schedule"), keys, instants),
        st.tuples(st.just("unschedule"), keys, st.none()),
        st.tuples(st.just("discard"), keys, st.none()),
        st.tuples(st.just("pop"), st.none(), instants),
        st.tuples(st.just("peek"), st.none(), st.none()),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(operations)
def test_wheel_matches_a_reference_model(
    ops: list[tuple[str, str | None, datetime | None]],
) -> None:
    wheel = TimerWheel()
    model: dict[str, tuple[datetime, int]] = {}
    seq = 0
    for op, key, when in ops:
        if op == "schedule":
            assert key is not None
            assert when is not None
            seq += 1
            model[key] = (when, seq)
            wheel.schedule(key, when)
        elif op in ("unschedule", "discard"):
            assert key is not None
            model.pop(key, None)
            if op == "discard":
                wheel.discard(key)
            else:
                wheel.schedule(key, None)
        elif op == "pop":
            assert when is not None
            due = [(w, k) for k, (w, _) in model.items() if w <= when]
            expected = None
            if due:
                w, k = min(due)
                expected = (k, w)
                del model[k]
            assert wheel.pop_next(when) == expected
        else:
            assert wheel.peek() == min((w for w, _ in model.values()), default=None)
        assert len(wheel) == len(model)
        # `floor` may be stale but never later than the earliest live due time.
        assert all(wheel.floor <= w for w, _ in model.values())
    rest = sorted((w, k) for k, (w, _) in model.items())
    assert drain(wheel) == [(k, w) for w, k in rest]


# --- property: a bulk load is the same as scheduling each entry in turn ------------------------

entries = st.lists(st.tuples(keys, instants), max_size=30)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(keys, instants), max_size=5), entries, operations)
def test_load_is_schedule_in_turn(
    before: list[tuple[str, datetime]],
    loaded: list[tuple[str, datetime]],
    ops: list[tuple[str, str | None, datetime | None]],
) -> None:
    bulk, one_by_one = TimerWheel(), TimerWheel()
    for key, when in before:  # none: the fast path into an empty wheel; else the general one
        bulk.schedule(key, when)
        one_by_one.schedule(key, when)
    bulk.load(iter(loaded))
    for key, when in loaded:
        one_by_one.schedule(key, when)
    assert len(bulk) == len(one_by_one)
    assert bulk.peek() == one_by_one.peek()
    for op, op_key, op_when in ops:
        for wheel in (bulk, one_by_one):
            if op == "schedule":
                assert op_key is not None
                wheel.schedule(op_key, op_when)
            elif op in ("unschedule", "discard"):
                assert op_key is not None
                wheel.discard(op_key)
        if op == "pop":
            assert op_when is not None
            assert bulk.pop_next(op_when) == one_by_one.pop_next(op_when)
        elif op == "peek":
            assert bulk.peek() == one_by_one.peek()
    assert drain(bulk) == drain(one_by_one)


def test_load_after_a_drain_starts_a_fresh_index() -> None:
    wheel = TimerWheel()
    wheel.schedule("a", at(5))
    assert drain(wheel) == [("a", at(5))]
    wheel.load([("b", at(70)), ("c", at(1)), ("b", at(2))])
    assert wheel.floor == at(1)
    assert drain(wheel) == [("c", at(1)), ("b", at(2))]


# --- a horizon within an instant: a million keys due together handed back in chunks -----------


@settings(max_examples=200, deadline=None)
@given(entries, instants, keys)
def test_a_key_is_held_only_before_the_horizon_pair(
    scheduled: list[tuple[str, datetime]], horizon: datetime, horizon_key: str
) -> None:
    wheel = TimerWheel()
    wheel.widen(horizon, [], horizon_key)
    latest: dict[str, datetime] = {}
    for key, when in scheduled:
        wheel.schedule(key, when)
        latest[key] = when
    held = sorted((w, k) for k, w in latest.items() if (w, k) < (horizon, horizon_key))
    assert drain(wheel) == [(k, w) for w, k in held]  # ties: in key order


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(keys, instants), max_size=30), st.integers(1, 5))
def test_widening_in_chunks_hands_every_key_back_in_order(
    scheduled: list[tuple[str, datetime]], chunk: int
) -> None:
    # The owner's index: one entry per key, ordered by (due time, key), as on disk.
    index = sorted(dict(scheduled).items(), key=lambda kw: (kw[1], kw[0]))
    end = at(10_000)
    wheel = TimerWheel()
    wheel.widen(at(0), [])  # held: nothing yet
    done, popped = 0, []
    while wheel.horizon_key or wheel.horizon != end:
        taken = index[done : done + chunk + 1]
        if len(taken) > chunk:  # cut within the index: the next entry is the new horizon
            key, when = taken.pop()
            wheel.widen(when, taken, key)
        else:
            wheel.widen(end, taken)
        done += len(taken)
        # everything handed back so far is due before anything not yet handed back
        while (item := wheel.pop_next(end)) is not None:
            popped.append(item)
    assert popped == index


def test_a_key_beyond_a_cut_horizon_is_dropped_and_one_before_it_kept() -> None:
    wheel = TimerWheel()
    wheel.widen(at(60), [("a", at(60)), ("b", at(60))], "c")
    wheel.schedule("d", at(60))  # at the instant, after the cut's key: the owner has it
    wheel.schedule("c", at(60))  # the cut's key itself is not held either
    wheel.schedule("a", at(60))  # rescheduled at the same time: still held
    wheel.schedule("e", at(59))
    assert drain(wheel) == [("e", at(59)), ("a", at(60)), ("b", at(60))]  # ties: key order
