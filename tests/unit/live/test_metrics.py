"""The worker's metrics: counted when a batch commits (never when it is aborted), every label
set from zero, gauges read from the runtime, and liveness."""

from __future__ import annotations

from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry

from streams.contract.events import Event
from streams.live.commit_hook import CommitHook
from streams.live.metrics import STUCK_S, TIMER_STALE_S, Liveness, RuntimeCollector, WorkerMetrics
from streams.live.outbox import Batch, Outbox
from streams.live.runtime import Runtime
from streams.live.settings import Settings
from streams.rules.engine import Engine
from streams.rules.policy import Policy
from tests.unit.factories import T0, DictLocalStore, FaustTable, event

TOPICS = ("o", "a", "r")


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    assert found is not None, f"{name}{labels} is not exported"
    return found


def test_every_label_set_starts_at_zero() -> None:
    registry = CollectorRegistry()
    WorkerMetrics(registry)
    assert value(registry, "aftersale_orders_paid_total") == 0
    assert value(registry, "aftersale_cases_opened_total", kind="refund_only", reason="other") == 0
    refunds = {"kind": "return_refund", "reason": "no_reason", "cause": "platform"}
    assert value(registry, "aftersale_refunds_total", **refunds) == 0
    assert value(registry, "aftersale_cases_closed_total", outcome="auto_closed") == 0
    assert (
        value(registry, "aftersale_auto_actions_total", rule="buyer_return", type="auto_close") == 0
    )
    assert value(registry, "aftersale_reminders_total", rule="merchant_receipt") == 0
    assert value(registry, "aftersale_deadletters_total", code="not_eligible") == 0
    assert value(registry, "aftersale_deadline_lateness_seconds_count") == 0
    assert registry.get_sample_value("aftersale_orders_paid_created") is None  # no _created


async def test_a_batch_counts_when_it_commits_and_never_when_it_is_aborted() -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    outboxes = {p: Outbox(p, DictLocalStore()) for p in range(2)}
    settled: list[Batch] = []

    def committed(batch: Batch) -> None:
        settled.append(batch)
        metrics.committed(batch.tally)

    hook = CommitHook("cl", outboxes.get, dict, committed)
    for p, outbox in outboxes.items():
        outbox.tally.dead_letter("malformed_json")
        outbox.tally.duplicate()
        outbox.emit(f"out-{p}", b"k", b"v")

    async def sender(tid: str | None, topic: str, partition: int, records: object) -> int:
        return 0

    await hook.send(sender, {0: "t-0", 1: "t-1"}, hook.take([0, 1]))
    assert value(registry, "aftersale_deadletters_total", code="malformed_json") == 0
    hook.aborted("t-1")  # its partition was revoked: the next owner redoes and counts it
    hook.committed("t-0")
    assert value(registry, "aftersale_deadletters_total", code="malformed_json") == 1
    assert value(registry, "aftersale_duplicates_total") == 1
    assert [b.partition for b in settled] == [0]


def counted(*events: Event, fired_at: datetime | None = None) -> CollectorRegistry:
    """The worker's metrics after one committed batch: `events` applied at T0, then what
    fired by `fired_at`."""
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    outbox = Outbox(0, DictLocalStore())
    engine = Engine(Policy(), store=outbox)
    effects = [effect for ev in events for effect in engine.apply(ev, T0).effects]
    outbox.tally.effects(effects, T0)
    if fired_at is not None:
        outbox.tally.effects(engine.advance(fired_at), fired_at)
    metrics.committed(outbox.take().tally)
    return registry


def test_the_tally_of_the_engine_counts_cases_refunds_actions_and_lateness() -> None:
    fired_at = T0 + Policy().deadlines["merchant_review"] + timedelta(seconds=0.3)
    registry = counted(
        event("order.paid"), event("aftersale.requested", kind="refund_only"), fired_at=fired_at
    )
    assert value(registry, "aftersale_orders_paid_total") == 1
    opened = {"kind": "refund_only", "reason": "quality"}
    assert value(registry, "aftersale_cases_opened_total", **opened) == 1
    assert value(registry, "aftersale_refunds_total", **opened, cause="auto") == 1
    assert value(registry, "aftersale_cases_closed_total", outcome="refunded") == 1
    rule = {"rule": "merchant_review"}
    assert value(registry, "aftersale_auto_actions_total", **rule, type="auto_refund") == 1
    assert value(registry, "aftersale_reminders_total", **rule) == 2
    assert value(registry, "aftersale_deadline_lateness_seconds_count") == 1
    assert abs(value(registry, "aftersale_deadline_lateness_seconds_sum") - 0.3) < 1e-6
    assert value(registry, "aftersale_deadline_lateness_seconds_bucket", le="0.25") == 0
    assert value(registry, "aftersale_deadline_lateness_seconds_bucket", le="0.5") == 1


def test_a_merchants_own_refund_counts_as_a_case_opened_and_closed_refunded() -> None:
    refund = event("aftersale.merchant_refunded", T0, case_id="c-m", reason="logistics")
    registry = counted(event("order.paid"), refund)
    opened = {"kind": "refund_only", "reason": "logistics"}
    assert value(registry, "aftersale_cases_opened_total", **opened) == 1
    assert value(registry, "aftersale_refunds_total", **opened, cause="merchant") == 1
    assert value(registry, "aftersale_cases_closed_total", outcome="refunded") == 1
    assert (
        value(registry, "aftersale_auto_actions_total", rule="merchant_review", type="auto_refund")
        == 0
    )


def test_the_gauges_follow_what_has_committed() -> None:
    memory = type("MemoryStore", (), {"data": {}})()
    runtime = Runtime(Settings(partitions=1), Policy(), FaustTable(memory), TOPICS)
    runtime.reassign({0})
    part = runtime.part(0)
    outbox = part.outbox
    effects = part.engine.apply(event("aftersale.requested"), T0).effects
    outbox.tally.effects(effects, T0)
    registry = CollectorRegistry()
    now = T0 + Policy().deadlines["merchant_review"] + timedelta(seconds=90)
    registry.register(RuntimeCollector(runtime, lambda: now, lambda: True, lambda: {0}))
    assert value(registry, "aftersale_open_cases", phase="review") == 0  # not committed yet
    batch = outbox.take()
    outbox.settle(batch)
    runtime.committed(batch)
    assert value(registry, "aftersale_open_cases", phase="review") == 1
    assert value(registry, "aftersale_pending_deadlines", rule="merchant_review") == 1
    # the first reminder (24 h before) is due and has not fired: overdue for about 24 h
    overdue = value(registry, "aftersale_oldest_overdue_seconds")
    assert overdue == (now - (T0 + timedelta(hours=24))).total_seconds()
    part.watermark.start_at("a", 1)
    part.watermark.start_at("o", 0)
    part.watermark.start_at("r", 0)
    part.watermark.sample(T0, {"o": 0, "a": 4, "r": 0})
    assert value(registry, "aftersale_consumer_lag_records", topic="a", partition="0") == 3
    assert value(registry, "aftersale_ready") == 1
    assert value(registry, "aftersale_partitions_assigned") == 1


def test_a_rebuilt_index_counts_the_open_cases_of_the_table() -> None:
    memory = type("MemoryStore", (), {"data": {}})()
    runtime = Runtime(Settings(partitions=1), Policy(), FaustTable(memory), TOPICS)
    part = runtime.part(0)
    part.engine.apply(event("aftersale.requested", order_id="o-1"), T0)
    part.engine.apply(event("aftersale.requested", order_id="o-2"), T0)
    part.engine.apply(event("aftersale.escalated", order_id="o-2"), T0)
    part.outbox.settle(part.outbox.take())
    runtime.revoke({0})
    runtime.keep_only({0})
    runtime.reassign({0})  # the memory store keeps no offset: indexed from the table
    assert runtime.open_cases() == {"review": 1, "escalated": 1}
    assert runtime.running_deadlines() == {"merchant_review": 1}  # the escalated one is paused


def test_liveness_notices_a_stalled_timer_and_a_stuck_input() -> None:
    memory = type("MemoryStore", (), {"data": {}})()
    runtime = Runtime(Settings(partitions=1), Policy(), FaustTable(memory), TOPICS)
    clock = [1000.0]
    liveness = Liveness(runtime, clock=lambda: clock[0])
    assert liveness.problems() == []
    part = runtime.part(0)
    for topic in TOPICS:
        part.watermark.start_at(topic, 0)
    part.watermark.sample(T0, {"o": 5, "a": 0, "r": 0})  # five records wait on "o"
    assert liveness.problems() == []
    clock[0] += STUCK_S + 1
    liveness.timer_ran()
    (stuck,) = liveness.problems()
    assert stuck.startswith("o[0] has not moved from offset 0")
    part.watermark.processed("o", 4)  # moving again
    assert liveness.problems() == []
    clock[0] += TIMER_STALE_S + 1
    assert liveness.problems()[0].startswith("the deadline timer has not run")
