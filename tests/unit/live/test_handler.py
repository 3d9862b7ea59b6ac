"""Per-record handling of the worker (`streams.live.handler`), without faust or a broker."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest

from streams.live import handler as handler_module
from streams.live.handler import ORIGIN_HEADER, RecordHandler
from streams.live.outbox import Output
from streams.live.partitioning import Partitioner
from streams.live.runtime import PartitionRuntime, Runtime
from streams.live.settings import Settings
from streams.live.tally import Tally
from streams.rules.policy import Policy
from tests.unit.factories import T0, FaustTable, body

PARTITIONS = 4
TOPICS = Settings(topic_prefix="t-", app_id="app", partitions=PARTITIONS).topics()
ORDERS, AFTERSALES, TICKS, REROUTE = TOPICS.orders, TOPICS.aftersales, TOPICS.ticks, TOPICS.reroute
POLICY = Policy(reminders={"merchant_review": (), "buyer_return": (), "merchant_receipt": ()})
REVIEW = POLICY.deadlines["merchant_review"]
H = timedelta(hours=1)
OWNER = Partitioner(PARTITIONS)
#: An order whose records belong on partition 0 (murmur2), and one that belongs elsewhere.
HOME = next(f"o-{n}" for n in range(100) if OWNER(f"o-{n}".encode()) == 0)
AWAY = next(f"o-{n}" for n in range(100) if OWNER(f"o-{n}".encode()) == 2)


class Feed:
    """A handler over partition 0, fed records as the agent feeds them; every record is
    appended (its `at`) one second after the previous unless told otherwise."""

    def __init__(self, policy: Policy = POLICY) -> None:
        memory = type("MemoryStore", (), {"data": {}})()
        settings = Settings(partitions=PARTITIONS)
        self.runtime = Runtime(settings, policy, FaustTable(memory), TOPICS.merged)
        self.handler = RecordHandler(self.runtime, TOPICS)
        self.ends: dict[str, int] = dict.fromkeys(TOPICS.merged, 0)
        self.feed: list[dict[str, Any]] = []
        self.tallies: list[Tally] = []
        self.clock = 0.0
        for topic in TOPICS.merged:  # reading starts at offset 0 (as committed)
            self.part.watermark.start_at(topic, 0)

    @property
    def part(self) -> PartitionRuntime:
        return self.runtime.part(0)

    def record(
        self,
        topic: str,
        value: bytes | None,
        now: datetime,
        key: bytes | None = HOME.encode(),
        at: float | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> int:
        """Append a record to `topic` and hand it to the handler; returns its offset."""
        offset = self.ends.get(topic, 0)
        self.ends[topic] = offset + 1
        self.clock = self.clock + 1 if at is None else at
        self.handler.handle(topic, 0, offset, key, value, now, self.clock, headers)
        return offset

    def append(self, topic: str, at: float) -> int:
        """A record appended to `topic` but not read yet (it only moves the end offset)."""
        offset = self.ends[topic]
        self.ends[topic] = offset + 1
        return offset

    def event(self, event_type: str, occurred: datetime, now: datetime, **fields: Any) -> int:
        topic = ORDERS if event_type.startswith("order.") else AFTERSALES
        value = orjson.dumps(body(event_type, occurred, order_id=HOME, **fields))
        return self.record(topic, value, now)

    def sample(self, at: datetime, now: datetime) -> None:
        """An end-offset sample taken at `at` (everything appended so far), then the timer's
        release of what it allows."""
        self.part.watermark.sample(at, {topic: self.ends[topic] for topic in TOPICS.merged})
        self.handler.release(0, now)

    def outputs(self) -> list[Output]:
        """The records for the contract's topics (and the reroute topic) since the last call;
        the read side's feed is kept in `self.feed`."""
        batch = self.part.outbox.take()
        self.feed.extend(orjson.loads(o.value) for o in batch.outputs if o.topic == TOPICS.status)
        self.tallies.append(batch.tally)
        return [o for o in batch.outputs if o.topic != TOPICS.status]


def values(outputs: list[Output], topic: str) -> list[dict[str, Any]]:
    return [orjson.loads(o.value) for o in outputs if o.topic == topic]


def test_a_record_waits_for_a_sample_while_the_other_input_is_idle() -> None:
    feed = Feed()
    feed.event("aftersale.requested", T0, T0)
    assert feed.part.outbox.get(HOME) is None  # held: an order fact appended before it?
    assert feed.part.watermark.positions[AFTERSALES] == 0  # not read yet, not committed past
    feed.sample(T0, T0)
    case = feed.part.outbox[HOME].open
    assert case is not None
    assert (case.case_id, case.phase) == ("c-42", "review")
    assert feed.part.watermark.positions == {ORDERS: 0, AFTERSALES: 1, REROUTE: 0}
    assert feed.outputs() == []


def test_records_read_out_of_append_order_are_judged_in_it() -> None:
    # The fault campaign's finding: a delivery written before a no-reason request, read after
    # it. Judged in append order, the request is past the 7-day window (as replay says).
    feed = Feed()
    delivered = orjson.dumps(body("order.delivered", T0, order_id=HOME))
    late = T0 + timedelta(days=7, hours=1)
    request = orjson.dumps(body("aftersale.requested", late, order_id=HOME, reason="no_reason"))
    feed.record(AFTERSALES, request, late, at=20.0)  # read first, appended second
    feed.record(ORDERS, delivered, late, at=10.0)
    assert feed.part.outbox.get(HOME) is None  # both held until the reroute topic is known
    feed.sample(late, late)
    (letter,) = values(feed.outputs(), TOPICS.deadletter)
    assert letter["error"] == "not_eligible"
    state = feed.part.outbox[HOME]
    assert (state.delivered_at, state.open) == (T0, None)


def test_a_record_appended_before_the_other_topics_last_judged_one_needs_no_more_of_it() -> None:
    feed = Feed()
    paid = orjson.dumps(body("order.paid", T0, order_id=HOME))
    feed.record(ORDERS, paid, T0, at=5.0)
    feed.sample(T0, T0)  # the paid fact judged: order-events last judged at 5.0
    feed.append(ORDERS, 7.0)  # another order fact appended, not read yet
    request = orjson.dumps(body("aftersale.requested", T0, order_id=HOME))
    feed.record(AFTERSALES, request, T0, at=4.0)
    feed.sample(T0, T0)
    # appended before the paid fact: nothing unread of order-events can precede it
    assert feed.part.outbox[HOME].open is not None
    approved = orjson.dumps(body("aftersale.approved", T0, order_id=HOME))
    feed.record(AFTERSALES, approved, T0, at=8.0)
    feed.sample(T0, T0)
    # appended after the unread order fact (7.0): waits for it
    case = feed.part.outbox[HOME].open
    assert case is not None
    assert case.phase == "review"
    assert feed.part.merge.holds(AFTERSALES)


def test_bad_input_becomes_a_dead_letter_with_where_it_came_from() -> None:
    feed = Feed()
    offset = feed.record(AFTERSALES, b"{not json", T0, key=b"k")
    feed.record(AFTERSALES, b"{not json", T0, key=None)
    feed.sample(T0, T0)
    first, _ = values(feed.outputs(), TOPICS.deadletter)
    assert (first["error"], first["topic"], first["partition"], first["offset"]) == (
        "malformed_json",
        AFTERSALES,
        0,
        offset,
    )
    assert first["original"] == "{not json"


def test_a_record_keyed_otherwise_than_by_its_order_is_refused_and_keyed_by_it() -> None:
    feed = Feed()
    value = orjson.dumps(body("aftersale.requested", T0, order_id=HOME))
    other = next(f"x-{n}".encode() for n in range(100) if OWNER(f"x-{n}".encode()) == 0)
    feed.record(AFTERSALES, value, T0, key=other)
    feed.record(AFTERSALES, value, T0, key=None)
    feed.sample(T0, T0)
    outputs = feed.outputs()
    assert [(o.topic, o.key) for o in outputs] == [(TOPICS.deadletter, HOME.encode())] * 2
    assert {v["error"] for v in values(outputs, TOPICS.deadletter)} == {"schema_violation"}
    assert feed.part.outbox.get(HOME) is None  # nothing applied


def test_an_order_event_on_the_after_sale_topic_is_a_schema_violation() -> None:
    feed = Feed()
    feed.record(AFTERSALES, orjson.dumps(body("order.paid", T0, order_id=HOME)), T0)
    feed.sample(T0, T0)
    (letter,) = values(feed.outputs(), TOPICS.deadletter)
    assert letter["error"] == "schema_violation"
    assert "order-events" in letter["detail"]


def test_a_record_on_another_partition_than_its_orders_is_rerouted_there() -> None:
    feed = Feed()
    value = orjson.dumps(body("aftersale.requested", T0, order_id=AWAY))
    offset = feed.record(AFTERSALES, value, T0, key=AWAY.encode(), at=1234.567)
    assert feed.outputs() == []  # in its turn, as any record of the partition
    feed.sample(T0, T0)
    (output,) = feed.outputs()
    assert output == Output(
        REROUTE,
        AWAY.encode(),
        value,
        partition=OWNER(AWAY.encode()),
        timestamp_ms=1234567,
        headers=((ORIGIN_HEADER, f"{AFTERSALES}:0:{offset}".encode()),),
    )
    assert feed.part.watermark.positions[AFTERSALES] == 1  # read here; judged there
    assert feed.tallies[-1].counts == {("rerouted", ()): 1}
    assert feed.part.outbox.get(AWAY) is None


def test_a_rerouted_record_is_judged_as_the_record_it_was() -> None:
    feed = Feed()
    request = orjson.dumps(body("aftersale.requested", T0, order_id=HOME))
    origin = [(ORIGIN_HEADER, f"{AFTERSALES}:3:77".encode())]
    feed.record(REROUTE, request, T0, at=1.0, headers=origin)
    feed.record(REROUTE, request, T0, at=2.0, headers=origin)  # the same event: a duplicate
    feed.record(REROUTE, b"{", T0, at=3.0, headers=origin)
    feed.sample(T0, T0)
    assert feed.part.outbox[HOME].open is not None
    (letter,) = values(feed.outputs(), TOPICS.deadletter)
    assert (letter["topic"], letter["partition"], letter["offset"]) == (AFTERSALES, 3, 77)


def test_a_record_on_the_reroute_topic_without_its_origin_is_refused_there() -> None:
    feed = Feed()
    request = orjson.dumps(body("aftersale.requested", T0, order_id=HOME))
    offset = feed.record(REROUTE, request, T0, headers=[(ORIGIN_HEADER, b"nonsense")])
    feed.sample(T0, T0)
    (letter,) = values(feed.outputs(), TOPICS.deadletter)
    assert (letter["error"], letter["topic"], letter["offset"]) == (
        "schema_violation",
        REROUTE,
        offset,
    )
    assert feed.part.outbox.get(HOME) is None


def test_a_refused_transition_is_dead_lettered_after_what_it_fired() -> None:
    feed = Feed()
    feed.event("aftersale.requested", T0, T0)
    late = T0 + REVIEW  # the merchant's approval comes at the deadline instant
    feed.event("aftersale.approved", late, late + H)
    feed.sample(T0, late + H)  # a sample from before the deadline: nothing fires on it
    outputs = feed.outputs()
    assert [o.topic for o in outputs] == [TOPICS.actions, TOPICS.deadletter]
    (action,) = values(outputs, TOPICS.actions)
    assert (action["type"], action["fired_at"]) == ("auto_approve", "2026-11-03T11:00:00Z")
    assert outputs[0].key == HOME.encode()
    assert values(outputs, TOPICS.deadletter)[0]["error"] == "invalid_transition"


def test_an_order_fact_fires_nothing_of_its_own() -> None:
    # sampled before the deadline: only an after-sale record of the case itself may fire it
    feed = Feed()
    feed.event("aftersale.requested", T0, T0)
    after = T0 + REVIEW + H
    feed.event("order.delivered", after, after)
    feed.sample(T0, after)
    assert feed.outputs() == []
    feed.event("aftersale.escalated", after, after)
    feed.sample(T0, after)
    assert [v["type"] for v in values(feed.outputs(), TOPICS.actions)] == ["auto_approve"]


def test_a_tick_fires_what_is_due_and_safe() -> None:
    feed = Feed()
    feed.event("aftersale.requested", T0, T0)
    due = T0 + REVIEW
    feed.sample(due + H, due + H)
    # the timer's release judges held records only: a deadline fires on a record of the
    # agent's (here the tick it sends), so its output commits with that record's offset
    assert feed.outputs() == []
    feed.part.tick_sent = 1.0
    feed.record(TICKS, b"", due + 2 * H, key=None)
    assert feed.part.tick_sent is None  # the timer may tick again
    (action,) = values(feed.outputs(), TOPICS.actions)
    # fired on the wall clock, never before the deadline
    assert (action["deadline_at"], action["fired_at"]) == (
        "2026-11-03T10:00:00Z",
        "2026-11-03T12:00:00Z",
    )


def test_nothing_fires_past_what_catch_up_has_made_safe() -> None:
    feed = Feed()
    feed.event("aftersale.requested", T0, T0)
    due = T0 + REVIEW
    feed.sample(due - H, due + H)  # everything before an instant an hour short of it
    feed.record(TICKS, b"", due + H, key=None)
    assert feed.outputs() == []
    feed.sample(due, due + H)
    feed.record(TICKS, b"", due + H, key=None)
    assert [v["type"] for v in values(feed.outputs(), TOPICS.actions)] == ["auto_approve"]


def test_an_order_past_its_retention_is_forgotten_only_up_to_catch_up() -> None:
    keep = timedelta(days=1)
    later = T0 + keep + H
    kept = Feed(Policy(order_retention=keep))
    kept.event("order.paid", T0, T0)
    kept.sample(T0, T0)
    kept.event("order.shipped", later, later)
    kept.sample(T0, later)  # nothing known read up to the retention's end: kept
    assert len(kept.part.outbox[HOME].event_ids) == 2
    forgotten = Feed(Policy(order_retention=keep))
    forgotten.event("order.paid", T0, T0)
    forgotten.sample(later, T0)
    forgotten.event("order.shipped", later, later)
    forgotten.sample(later, later)
    assert len(forgotten.part.outbox[HOME].event_ids) == 1  # forgotten first: a new order


def test_the_read_sides_feed_and_the_counts_travel_with_the_batch() -> None:
    feed = Feed()
    feed.event("order.paid", T0, T0)
    feed.event("aftersale.requested", T0, T0)
    feed.record(AFTERSALES, b"{", T0)
    feed.sample(T0, T0)
    feed.event("aftersale.requested", T0, T0)  # a retry of nothing: a new event id, refused
    feed.sample(T0, T0)
    feed.outputs()
    assert [(r["type"], r.get("what")) for r in feed.feed] == [
        ("order_paid", None),
        ("case", "aftersale.requested"),
    ]
    (tally,) = feed.tallies
    assert tally.counts == {
        ("orders_paid", ()): 1,
        ("cases_opened", ("return_refund", "quality")): 1,
        ("deadletters", ("malformed_json",)): 1,
        ("deadletters", ("case_already_open",)): 1,
    }
    assert (tally.phases, tally.rules) == ({"review": 1}, {"merchant_review": 1})
    due = T0 + REVIEW
    feed.sample(due, due + H)
    feed.record(TICKS, b"", due + H, key=None)
    feed.outputs()
    tally = feed.tallies[-1]
    assert tally.counts == {("auto_actions", ("merchant_review", "auto_approve")): 1}
    assert tally.lateness == [3600.0]  # fired an hour after its deadline
    assert (tally.phases, tally.rules) == (
        {"review": -1, "awaiting_return": 1},
        {"merchant_review": -1, "buyer_return": 1},
    )
    assert feed.feed[-1]["fired_at"] == "2026-11-03T11:00:00Z"


def test_no_read_side_feed_when_it_is_off() -> None:
    feed = Feed()
    feed.handler.feed_status = False
    feed.event("aftersale.requested", T0, T0)
    feed.sample(T0, T0)
    feed.outputs()
    assert feed.feed == []
    assert feed.tallies[0].counts == {("cases_opened", ("return_refund", "quality")): 1}


def test_the_wait_of_each_held_record_is_counted() -> None:
    feed = Feed()
    feed.event("aftersale.requested", T0, T0)  # read at T0
    feed.sample(T0, T0 + timedelta(seconds=0.2))  # released by the next sample
    feed.outputs()
    assert feed.tallies[-1].waits == [0.2]


def test_a_record_for_elsewhere_waits_its_turn_behind_a_held_one() -> None:
    # The fault campaign's finding: a record held for its turn, then a record of the same
    # topic to reroute. Rerouted at once, it moved the committed position past the held one,
    # which a kill -9 then lost (committed, never judged).
    feed = Feed()
    feed.event("aftersale.requested", T0, T0)  # held: the order topic is not known past it
    away = orjson.dumps(body("aftersale.requested", T0, order_id=AWAY))
    feed.record(AFTERSALES, away, T0, key=AWAY.encode())
    assert feed.part.watermark.positions[AFTERSALES] == 0  # nothing may commit past the first
    assert feed.outputs() == []
    feed.sample(T0, T0)
    assert feed.part.watermark.positions[AFTERSALES] == 2
    assert feed.part.outbox[HOME].open is not None
    (output,) = feed.outputs()
    assert (output.topic, output.key) == (REROUTE, AWAY.encode())


def test_a_burst_of_due_deadlines_fires_a_chunk_per_tick_and_per_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(handler_module, "FIRE_PER_TICK", 3)
    monkeypatch.setattr(handler_module, "FIRE_PER_RECORD", 1)
    feed = Feed()
    home = [f"o-{n}" for n in range(200) if OWNER(f"o-{n}".encode()) == 0][:8]
    for n, order in enumerate(home[:7]):  # seven requests in the same second
        value = orjson.dumps(body("aftersale.requested", T0, order_id=order, case_id=f"c-{n}"))
        feed.record(AFTERSALES, value, T0, key=order.encode())
    due = T0 + REVIEW
    feed.sample(due + H, due + H)
    fired: list[list[str]] = []
    feed.record(TICKS, b"", due + H, key=None)
    fired.append([a["order_id"] for a in values(feed.outputs(), TOPICS.actions)])
    paid = orjson.dumps(body("order.paid", due, order_id=home[7]))
    feed.record(ORDERS, paid, due + H, key=home[7].encode())  # a free chance: one more
    feed.sample(due + H, due + H)
    fired.append([a["order_id"] for a in values(feed.outputs(), TOPICS.actions)])
    feed.record(TICKS, b"", due + H, key=None)
    fired.append([a["order_id"] for a in values(feed.outputs(), TOPICS.actions)])
    assert [len(chunk) for chunk in fired] == [3, 1, 3]
    # each once, in (due, order id) order
    assert [order for chunk in fired for order in chunk] == sorted(home[:7])
    wake = feed.part.engine.next_wakeup()  # the buyers' return deadlines: days away
    assert wake is not None
    assert wake > due + H


def test_a_tick_fires_less_while_input_waits_to_be_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handler_module, "FIRE_PER_TICK", 3)
    monkeypatch.setattr(handler_module, "FIRE_PER_TICK_BEHIND", 1)
    monkeypatch.setattr(handler_module, "BEHIND", 2)
    feed = Feed()
    home = [f"o-{n}" for n in range(200) if OWNER(f"o-{n}".encode()) == 0][:6]
    for n, order in enumerate(home):
        value = orjson.dumps(body("aftersale.requested", T0, order_id=order, case_id=f"c-{n}"))
        feed.record(AFTERSALES, value, T0, key=order.encode())
    due = T0 + REVIEW
    feed.sample(due + H, due + H)  # everything read
    for _ in range(3):  # then three records appended, not read yet: more than BEHIND
        feed.append(ORDERS, 0)
    feed.part.watermark.sample(due + H, {t: feed.ends[t] for t in TOPICS.merged})
    fired = []
    feed.record(TICKS, b"", due + H, key=None)
    fired.append(len(values(feed.outputs(), TOPICS.actions)))
    feed.part.watermark.skip_to(ORDERS, feed.ends[ORDERS])  # read (they held nothing here)
    feed.record(TICKS, b"", due + H, key=None)
    fired.append(len(values(feed.outputs(), TOPICS.actions)))
    assert fired == [1, 3]
