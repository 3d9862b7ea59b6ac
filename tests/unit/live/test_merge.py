"""Input order (`streams.live.merge`): whatever order the inputs are read in, records are
judged in the order they were appended, and none waits longer than the next sample."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.live.catchup import PartitionWatermark
from streams.live.merge import Held, InputMerge
from tests.unit.factories import T0

TOPICS = ("orders", "aftersales", "reroute")
TIMED = TOPICS[:2]


@st.composite
def runs(draw: st.DrawFn) -> tuple[list[Held], list[int], list[int]]:
    """Records appended to the two timed topics (times growing), the order they are read in
    (each topic's in order, the topics interleaved at will), and after which reads an
    end-offset sample of everything appended so far... up to which append is taken."""
    count = draw(st.integers(1, 30))
    topics = draw(st.lists(st.sampled_from(TIMED), min_size=count, max_size=count))
    gaps = draw(st.lists(st.sampled_from([0.0, 0.001, 1.0]), min_size=count, max_size=count))
    at, offsets = 0.0, dict.fromkeys(TOPICS, 0)
    appended: list[Held] = []
    for topic, gap in zip(topics, gaps, strict=True):
        # Equal append times (the same millisecond) cannot tell which came first; ties go to
        # order-events, so a tie here is only ever appended in that order.
        if gap == 0.0 and appended and TOPICS.index(topic) < TOPICS.index(appended[-1].topic):
            gap = 0.001
        at += gap
        appended.append(Held(topic, offsets[topic], at, None, b""))
        offsets[topic] += 1
    # read order: a random interleaving that keeps each topic's own order
    pending = {t: [h for h in appended if h.topic == t] for t in TIMED}
    picks = draw(st.lists(st.sampled_from(TIMED), min_size=count * 2, max_size=count * 4))
    read_order: list[int] = []
    for topic in picks + list(TIMED) * count:
        if pending[topic]:
            read_order.append(appended.index(pending[topic].pop(0)))
    # samples: after the k-th read, of everything appended up to some append at or after it
    sample_after = draw(st.lists(st.integers(0, count - 1), max_size=6))
    return appended, read_order, sorted(sample_after)


@given(runs())
@settings(max_examples=300, deadline=None)
def test_records_are_judged_in_append_order_whatever_the_read_order(
    run: tuple[list[Held], list[int], list[int]],
) -> None:
    appended, read_order, sample_after = run
    merge = InputMerge(TOPICS, TIMED)
    mark = PartitionWatermark(TOPICS)
    for topic in TOPICS:
        mark.start_at(topic, 0)
    judged: list[Held] = []

    def judge() -> None:
        for held in merge.ready(mark.passed):
            mark.processed(held.topic, held.offset)
            judged.append(held)

    def sample(upto: int) -> None:
        # an answer that covers every record appended up to `upto` (and none after)
        ends = dict.fromkeys(TOPICS, 0)
        for held in appended[: upto + 1]:
            ends[held.topic] = held.offset + 1
        mark.sample(T0 + timedelta(seconds=len(mark._samples)), ends)

    highest_read = -1
    for n, index in enumerate(read_order):
        merge.offer(appended[index])
        highest_read = max(highest_read, index)
        judge()
        for k in sample_after:
            if k == n:
                sample(highest_read)  # a sample taken after everything read so far appended
                judge()
    sample(len(appended) - 1)  # the next sample covers everything: nothing waits past it
    judge()
    assert len(merge) == 0
    rank = {t: r for r, t in enumerate(TOPICS)}
    assert judged == sorted(appended, key=lambda h: (h.at, rank[h.topic], h.offset))


def test_a_record_waits_for_a_sample_while_another_topic_is_idle() -> None:
    merge = InputMerge(TOPICS, TIMED)
    mark = PartitionWatermark(TOPICS)
    for topic in TOPICS:
        mark.start_at(topic, 0)
    merge.offer(Held("aftersales", 0, 5.0, None, b""))
    assert list(merge.ready(mark.passed)) == []
    assert merge.holds("aftersales")
    mark.sample(T0, {"orders": 0, "aftersales": 1, "reroute": 0})
    assert [h.offset for h in merge.ready(mark.passed)] == [0]
    assert not merge.holds("aftersales")


def test_an_unread_record_of_the_other_topic_holds_a_later_one_back() -> None:
    merge = InputMerge(TOPICS, TIMED)
    mark = PartitionWatermark(TOPICS)
    for topic in TOPICS:
        mark.start_at(topic, 0)
    merge.offer(Held("aftersales", 0, 5.0, None, b""))
    # an order fact was appended before the after-sale record, and is not read yet
    mark.sample(T0, {"orders": 1, "aftersales": 1, "reroute": 0})
    assert list(merge.ready(mark.passed)) == []
    merge.offer(Held("orders", 0, 4.0, None, b""))
    released = []
    for held in merge.ready(mark.passed):
        mark.processed(held.topic, held.offset)
        released.append(held.topic)
    assert released == ["orders", "aftersales"]
