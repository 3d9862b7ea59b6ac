"""Catch-up safety: a sample's time becomes safe only once its end offsets are processed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.live.catchup import PartitionWatermark
from tests.unit.factories import T0

S = timedelta(seconds=1)
TOPICS = ("order-events", "aftersale-events")


def test_nothing_is_safe_before_a_sample() -> None:
    mark = PartitionWatermark(TOPICS)
    mark.processed("order-events", 10)
    assert mark.safe_until() is None


def test_backlog_must_be_read_before_the_sample_time_is_safe() -> None:
    mark = PartitionWatermark(TOPICS)
    mark.start_at("order-events", 0)
    mark.start_at("aftersale-events", 0)
    mark.sample(T0, {"order-events": 3, "aftersale-events": 2})
    assert mark.safe_until() is None
    mark.processed("order-events", 2)
    assert mark.safe_until() is None  # aftersale-events still has unread records
    mark.processed("aftersale-events", 0)
    assert mark.safe_until() is None
    mark.processed("aftersale-events", 1)
    assert mark.safe_until() == T0


def test_a_gap_of_transaction_markers_is_reported_and_can_be_skipped() -> None:
    mark = PartitionWatermark(TOPICS)
    assert mark.behind() == {}  # no sample yet
    mark.start_at("order-events", 0)
    mark.processed("aftersale-events", 0)  # one record in a transaction: its marker is at 1
    mark.sample(T0, {"order-events": 0, "aftersale-events": 2})
    assert mark.safe_until() is None
    assert mark.behind() == {"aftersale-events": (1, 2)}
    mark.skip_to("aftersale-events", 2)  # the gap held no record
    assert mark.behind() == {}
    assert mark.safe_until() == T0
    mark.skip_to("aftersale-events", 1)  # never backwards
    assert mark.positions["aftersale-events"] == 2


def test_idle_partitions_keep_up_from_their_start_position() -> None:
    mark = PartitionWatermark(TOPICS)
    mark.start_at("order-events", 5)
    mark.start_at("aftersale-events", 7)
    mark.sample(T0, {"order-events": 5, "aftersale-events": 7})
    assert mark.safe_until() == T0


def test_later_samples_advance_only_when_reached_and_never_go_back() -> None:
    mark = PartitionWatermark(TOPICS)
    mark.sample(T0, {"order-events": 1, "aftersale-events": 0})
    mark.sample(T0 + S, {"order-events": 2, "aftersale-events": 0})
    mark.processed("order-events", 0)
    mark.start_at("aftersale-events", 0)
    assert mark.safe_until() == T0
    mark.processed("order-events", 1)
    assert mark.safe_until() == T0 + S
    mark.start_at("order-events", 0)  # a lower start does not move positions back
    mark.sample(T0 + 2 * S, {"order-events": 2, "aftersale-events": 0})
    assert mark.safe_until() == T0 + 2 * S


def test_a_sample_must_cover_every_input_topic() -> None:
    mark = PartitionWatermark(TOPICS)
    with pytest.raises(ValueError, match="needs end offsets"):
        mark.sample(T0, {"order-events": 1})


def test_old_samples_are_bounded() -> None:
    mark = PartitionWatermark(TOPICS, keep=3)
    for n in range(10):
        mark.sample(T0 + n * S, {"order-events": n + 1, "aftersale-events": 0})
    mark.start_at("aftersale-events", 0)
    mark.processed("order-events", 9)
    assert mark.safe_until() == T0 + 9 * S


@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=30),
    st.data(),
)
def test_safe_time_never_passes_an_unread_record(
    appends: list[tuple[int, int]], data: st.DataObject
) -> None:
    """Model: at second n, records are appended, then maybe sampled, then some are read."""
    mark = PartitionWatermark(TOPICS)
    written: dict[str, list[int]] = {t: [] for t in TOPICS}  # write second of each offset
    read = dict.fromkeys(TOPICS, 0)
    for topic in TOPICS:
        mark.start_at(topic, 0)
    for n, counts in enumerate(appends):
        for topic, count in zip(TOPICS, counts, strict=True):
            written[topic] += [n] * count
        if data.draw(st.booleans()):
            mark.sample(T0 + n * S + S / 2, {t: len(written[t]) for t in TOPICS})
        for topic in TOPICS:
            upto = data.draw(st.integers(read[topic], len(written[topic])))
            for offset in range(read[topic], upto):
                mark.processed(topic, offset)
            read[topic] = upto
        safe = mark.safe_until()
        if safe is None:
            continue
        for topic in TOPICS:
            unread = written[topic][read[topic] :]
            # every record written before the safe instant has been read
            assert all(T0 + second * S >= safe for second in unread)


def test_a_topic_outside_the_inputs_is_recorded_without_holding_catch_up_back() -> None:
    mark = PartitionWatermark(TOPICS)
    mark.start_at("order-events", 0)
    mark.start_at("aftersale-events", 0)
    mark.sample(T0, {"order-events": 1, "aftersale-events": 0})
    mark.processed("ticks", 4)  # the worker records its ticks topic too (for the commit)
    assert mark.positions["ticks"] == 5
    assert mark.safe_until() is None
    mark.processed("order-events", 0)
    assert mark.safe_until() == T0
