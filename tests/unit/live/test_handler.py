"""Per-record handling of the worker (`streams.live.handler`), without faust or a broker."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import orjson

from streams.live.handler import RecordHandler
from streams.live.outbox import Output
from streams.live.runtime import PartitionRuntime, Runtime
from streams.live.settings import Settings
from streams.rules.policy import Policy
from tests.unit.factories import T0, FaustTable, body

TOPICS = Settings(topic_prefix="t-", app_id="app").topics()
ORDERS, AFTERSALES, TICKS = TOPICS.orders, TOPICS.aftersales, TOPICS.ticks
POLICY = Policy(reminders={"merchant_review": (), "buyer_return": (), "merchant_receipt": ()})
REVIEW = POLICY.deadlines["merchant_review"]
H = timedelta(hours=1)


class Feed:
    """A handler over one in-memory partition, fed records as the agent feeds them."""

    def __init__(self, policy: Policy = POLICY) -> None:
        memory = type("MemoryStore", (), {"data": {}})()
        self.runtime = Runtime(Settings(partitions=1), policy, FaustTable(memory), TOPICS.inputs)
        self.handler = RecordHandler(self.runtime, TOPICS)
        self.offsets: dict[str, int] = {}
        for topic in TOPICS.inputs:  # reading starts at offset 0 (as committed)
            self.part.watermark.start_at(topic, 0)

    @property
    def part(self) -> PartitionRuntime:
        return self.runtime.part(0)

    def record(
        self, topic: str, value: bytes | None, now: datetime, key: bytes | None = b"o-7"
    ) -> int:
        offset = self.offsets.get(topic, 0)
        self.offsets[topic] = offset + 1
        self.handler.handle(topic, 0, offset, key, value, now)
        return offset

    def event(self, event_type: str, at: datetime, now: datetime, **fields: Any) -> int:
        topic = ORDERS if event_type.startswith("order.") else AFTERSALES
        return self.record(topic, orjson.dumps(body(event_type, at, **fields)), now)

    def outputs(self) -> list[Output]:
        return self.part.outbox.take().outputs

    def all_caught_up(self, at: datetime) -> None:
        """An end-offset sample at `at` that the processed positions have reached."""
        positions = self.part.watermark.positions
        self.part.watermark.sample(at, {t: positions[t] for t in TOPICS.inputs})


def values(outputs: list[Output], topic: str) -> list[dict[str, Any]]:
    return [orjson.loads(o.value) for o in outputs if o.topic == topic]


def test_a_record_is_applied_and_its_position_kept_for_catch_up_and_commits() -> None:
    feed = Feed()
    feed.event("aftersale.requested", T0, T0)
    feed.event("order.paid", T0, T0)
    assert feed.part.watermark.positions == {AFTERSALES: 1, ORDERS: 1}
    case = feed.part.outbox["o-7"].open
    assert case is not None
    assert (case.case_id, case.phase) == ("c-42", "review")
    assert feed.outputs() == []  # nothing to say yet


def test_bad_input_becomes_a_dead_letter_with_where_it_came_from() -> None:
    feed = Feed()
    offset = feed.record(AFTERSALES, b"{not json", T0, key=b"k")
    (letter,) = values(feed.outputs(), TOPICS.deadletter)
    assert (letter["error"], letter["topic"], letter["partition"], letter["offset"]) == (
        "malformed_json",
        AFTERSALES,
        0,
        offset,
    )
    assert letter["original"] == "{not json"


def test_a_record_keyed_otherwise_than_by_its_order_is_refused_and_keyed_by_it() -> None:
    feed = Feed()
    value = orjson.dumps(body("aftersale.requested", T0))
    feed.record(AFTERSALES, value, T0, key=b"o-other")
    feed.record(AFTERSALES, value, T0, key=None)
    outputs = feed.outputs()
    assert [(o.topic, o.key) for o in outputs] == [(TOPICS.deadletter, b"o-7")] * 2
    assert {v["error"] for v in values(outputs, TOPICS.deadletter)} == {"schema_violation"}
    assert feed.part.outbox.get("o-7") is None  # nothing applied


def test_an_order_event_on_the_after_sale_topic_is_a_schema_violation() -> None:
    feed = Feed()
    feed.record(AFTERSALES, orjson.dumps(body("order.paid", T0)), T0)
    (letter,) = values(feed.outputs(), TOPICS.deadletter)
    assert letter["error"] == "schema_violation"
    assert "order-events" in letter["detail"]


def test_a_refused_transition_is_dead_lettered_after_what_it_fired() -> None:
    feed = Feed()
    feed.event("aftersale.requested", T0, T0)
    # the merchant's approval comes at the deadline instant: the deadline fires first
    late = T0 + REVIEW
    feed.event("aftersale.approved", late, late + H)
    outputs = feed.outputs()
    assert [o.topic for o in outputs] == [TOPICS.actions, TOPICS.deadletter]
    (action,) = values(outputs, TOPICS.actions)
    assert (action["type"], action["fired_at"]) == ("auto_approve", "2026-11-03T11:00:00Z")
    assert outputs[0].key == b"o-7"
    assert values(outputs, TOPICS.deadletter)[0]["error"] == "invalid_transition"


def test_an_order_fact_fires_nothing_of_its_own_before_catch_up() -> None:
    # nothing sampled yet: only an after-sale record of the case itself may fire its deadline
    feed = Feed()
    feed.event("aftersale.requested", T0, T0)
    after = T0 + REVIEW + H
    feed.event("order.delivered", after, after)
    assert feed.outputs() == []
    feed.event("aftersale.escalated", after, after, case_id="c-42")
    assert [v["type"] for v in values(feed.outputs(), TOPICS.actions)] == ["auto_approve"]


def test_any_record_fires_what_is_due_and_safe_a_tick_included() -> None:
    feed = Feed()
    feed.event("aftersale.requested", T0, T0)
    due = T0 + REVIEW
    feed.all_caught_up(due + H)
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
    feed.all_caught_up(due - H)  # everything before an instant an hour short of the deadline
    feed.record(TICKS, b"", due + H, key=None)
    assert feed.outputs() == []
    feed.all_caught_up(due)
    feed.record(TICKS, b"", due + H, key=None)
    assert [v["type"] for v in values(feed.outputs(), TOPICS.actions)] == ["auto_approve"]


def test_an_order_past_its_retention_is_forgotten_only_up_to_catch_up() -> None:
    keep = timedelta(days=1)
    feed = Feed(Policy(order_retention=keep))
    feed.event("order.paid", T0, T0)
    later = T0 + keep + H
    # nothing known to be caught up: the order is kept (an unread record could keep it)
    feed.event("order.shipped", later, later)
    assert len(feed.part.outbox["o-7"].event_ids) == 2
    feed2 = Feed(Policy(order_retention=keep))
    feed2.event("order.paid", T0, T0)
    feed2.all_caught_up(later)
    feed2.event("order.shipped", later, later)
    assert len(feed2.part.outbox["o-7"].event_ids) == 1  # forgotten first: a new order
