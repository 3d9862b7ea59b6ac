"""Catch-up across every input partition: settled by the group's committed offsets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from streams.live.group_watermark import GroupWatermark

T0 = datetime(2026, 12, 1, tzinfo=UTC)
A0, A1 = ("aftersale-events", 0), ("aftersale-events", 1)
O0, O1 = ("order-events", 0), ("order-events", 1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_nothing_is_safe_before_the_committed_offsets_reach_a_sample() -> None:
    group = GroupWatermark()
    group.sample(at(1), {A0: 5, A1: 3, O0: 0, O1: 0})
    assert group.safe_for(at(10)) is None
    group.committed(at(2), {A0: 5, A1: 2, O0: 0, O1: 0})  # A1 short by one
    assert group.safe_for(at(10)) is None
    group.committed(at(3), {A0: 5, A1: 3, O0: 0, O1: 0})
    assert group.safe_for(at(10)) == at(1)


def test_a_partition_must_have_read_its_reroutes_after_the_settling_fetch() -> None:
    group = GroupWatermark()
    group.sample(at(1), {A0: 1, A1: 1})
    group.committed(at(2), {A0: 1, A1: 1})  # answered at 2: reroutes committed by then
    assert group.safe_for(at(1.5)) is None  # its own inputs read only up to a sample at 1.5
    assert group.safe_for(at(2)) == at(1)


def test_the_latest_settled_sample_counts_and_a_lagging_partition_holds_everyone() -> None:
    group = GroupWatermark()
    group.sample(at(1), {A0: 1, A1: 1})
    group.sample(at(2), {A0: 2, A1: 1})
    group.sample(at(3), {A0: 2, A1: 9})
    group.committed(at(4), {A0: 2, A1: 1})  # A1 (another worker's, say) is behind at 9
    assert group.safe_for(at(5)) == at(2)
    group.committed(at(6), {A0: 2, A1: 9})
    assert group.safe_for(at(5)) == at(2)  # this partition has not read past the 6 fetch
    assert group.safe_for(at(6)) == at(3)


def test_a_partition_never_committed_counts_from_what_the_caller_gives() -> None:
    group = GroupWatermark()
    group.sample(at(1), {A0: 0, A1: 4})
    group.committed(at(2), {A0: 0})  # A1 missing: not reached
    assert group.safe_for(at(3)) is None
    group.committed(at(3), {A0: 0, A1: 4})  # the caller gives the log start for it
    assert group.safe_for(at(3)) == at(1)


def test_only_the_newest_settled_entries_are_kept() -> None:
    group = GroupWatermark(keep=2)
    for n in range(1, 4):
        group.sample(at(n), {A0: n})
        group.committed(at(n + 0.5), {A0: n})
    assert group.safe_for(at(2.6)) == at(2)  # the entry answered at 2.5 is still there
    assert group.safe_for(at(1.6)) is None  # the one answered at 1.5 was dropped: wait


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), min_size=1, max_size=30))
def test_safe_never_passes_a_sample_whose_ends_are_not_committed(
    steps: list[tuple[int, int]],
) -> None:
    """Ends grow; committed offsets lag them. Whatever the interleaving, the safe instant is
    one whose sample every committed offset fetched before had reached."""
    group = GroupWatermark(keep=4)
    ends = {A0: 0}
    committed = {A0: 0}
    history: list[tuple[datetime, int]] = []
    clock = 0.0
    for grow, catch_up in steps:
        clock += 1
        ends[A0] += grow
        group.sample(at(clock), dict(ends))
        history.append((at(clock), ends[A0]))
        committed[A0] = min(ends[A0], committed[A0] + catch_up)
        clock += 0.5
        group.committed(at(clock), dict(committed))
        safe = group.safe_for(at(clock))
        if safe is not None:
            sampled_end = dict(history)[safe]
            assert sampled_end <= committed[A0]
