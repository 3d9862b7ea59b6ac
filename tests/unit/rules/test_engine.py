"""Every row of the contract's tables, driven through the engine as replay and the worker do."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from streams.contract.events import Event
from streams.contract.times import format_time
from streams.rules.effects import Action, CaseChanged, Effect, Reminder
from streams.rules.engine import Engine, Result
from streams.rules.policy import Policy, merge_freezes, policy_from_mapping
from tests.unit.factories import T0, event

H = timedelta(hours=1)
D = timedelta(days=1)
REVIEW = 48 * H


class Run:
    """An engine driven like replay: the clock is the largest occurred_at so far."""

    def __init__(self, policy: Policy | None = None) -> None:
        self.engine = Engine(policy or Policy())
        self.clock: datetime | None = None
        self.effects: list[Effect] = []

    def feed(self, ev: Event) -> Result:
        if self.clock is None or ev.occurred_at > self.clock:
            self.clock = ev.occurred_at
            self.effects += self.engine.advance(self.clock)
        result = self.engine.apply(ev, self.clock)
        self.effects += result.effects
        return result

    def send(self, event_type: str, at: timedelta, /, **fields: Any) -> Result:
        return self.feed(event(event_type, at, **fields))

    def until(self, at: timedelta) -> None:
        self.effects += self.engine.advance(T0 + at)

    def actions(self) -> list[tuple[str, str, str]]:
        return [
            (a.type, a.rule, format_time(a.deadline_at))
            for a in self.effects
            if isinstance(a, Action)
        ]

    def reminders(self) -> list[str]:
        return [r.notification_id for r in self.effects if isinstance(r, Reminder)]

    def phase(self, order_id: str = "o-7") -> str:
        state = self.engine.store[order_id]
        return state.open.phase if state.open else "none"

    def outcome(self, case_id: str = "c-42", order_id: str = "o-7") -> str | None:
        return self.engine.store[order_id].closed.get(case_id)


def rejected(result: Result) -> str | None:
    return None if result.error is None else result.error.code


def at(delta: timedelta) -> str:
    return format_time(T0 + delta)


# --- phases and transitions -------------------------------------------------------------


def test_requested_opens_review_and_starts_merchant_review() -> None:
    run = Run()
    assert run.send("aftersale.requested", 0 * H).verdict == "applied"
    assert run.phase() == "review"
    case = run.engine.store["o-7"].open
    assert case is not None
    assert case.rule == "merchant_review"
    assert case.due_at == T0 + REVIEW


def test_approved_return_refund_awaits_return_with_buyer_return_from_approval() -> None:
    run = Run()
    run.send("aftersale.requested", 0 * H)
    run.send("aftersale.approved", 5 * H)
    case = run.engine.store["o-7"].open
    assert case is not None
    assert case.phase == "awaiting_return"
    assert case.rule == "buyer_return"
    assert case.due_at == T0 + 5 * H + 10 * D


def test_approved_refund_only_awaits_refund_without_deadline() -> None:
    run = Run()
    run.send("aftersale.requested", 0 * H, kind="refund_only")
    run.send("aftersale.approved", 1 * H)
    case = run.engine.store["o-7"].open
    assert case is not None
    assert case.phase == "awaiting_refund"
    assert case.due_at is None
    run.until(60 * D)
    assert run.actions() == []


def test_rejected_in_review_closes_rejected() -> None:
    run = Run()
    run.send("aftersale.requested", 0 * H)
    run.send("aftersale.rejected", 1 * H)
    assert run.outcome() == "rejected"
    run.until(60 * D)
    assert run.actions() == []


def test_return_shipped_then_received_then_refunded() -> None:
    run = Run()
    run.send("aftersale.requested", 0 * H)
    run.send("aftersale.approved", 1 * H)
    run.send("aftersale.return_shipped", 2 * D)
    case = run.engine.store["o-7"].open
    assert case is not None
    assert case.phase == "awaiting_receipt"
    assert case.rule == "merchant_receipt"
    assert case.due_at == T0 + 12 * D
    run.send("aftersale.received", 3 * D)
    assert run.phase() == "awaiting_refund"
    run.send("aftersale.refunded", 4 * D)
    assert run.outcome() == "refunded"
    run.until(60 * D)
    assert run.actions() == []


@pytest.mark.parametrize(
    ("steps", "closing"),
    [
        ([], "aftersale.refunded"),
        (["aftersale.approved"], "aftersale.refunded"),
        (["aftersale.approved", "aftersale.return_shipped"], "aftersale.refunded"),
        (["aftersale.escalated"], "aftersale.refunded"),
        ([], "aftersale.withdrawn"),
        (["aftersale.approved"], "aftersale.withdrawn"),
        (["aftersale.approved", "aftersale.return_shipped"], "aftersale.withdrawn"),
        (
            ["aftersale.approved", "aftersale.return_shipped", "aftersale.received"],
            "aftersale.withdrawn",
        ),
        (["aftersale.escalated"], "aftersale.withdrawn"),
    ],
)
def test_refunded_and_withdrawn_close_any_open_phase(steps: list[str], closing: str) -> None:
    run = Run()
    run.send("aftersale.requested", 0 * H)
    for n, kind in enumerate(steps, 1):
        assert run.send(kind, n * H).verdict == "applied"
    assert run.send(closing, 10 * H).verdict == "applied"
    assert run.outcome() == closing.split(".")[1]
    run.until(60 * D)
    assert run.actions() == []


@pytest.mark.parametrize(
    ("kind", "steps", "phase"),
    [
        ("aftersale.approved", ["aftersale.approved"], "awaiting_return"),
        ("aftersale.rejected", ["aftersale.approved"], "awaiting_return"),
        ("aftersale.return_shipped", [], "review"),
        ("aftersale.received", ["aftersale.approved"], "awaiting_return"),
        ("aftersale.resolved", [], "review"),
        ("aftersale.escalated", ["aftersale.escalated"], "escalated"),
        ("aftersale.approved", ["aftersale.escalated"], "escalated"),
        ("aftersale.return_shipped", ["aftersale.escalated"], "escalated"),
    ],
)
def test_anything_else_is_invalid_transition(kind: str, steps: list[str], phase: str) -> None:
    run = Run()
    run.send("aftersale.requested", 0 * H)
    for n, step in enumerate(steps, 1):
        run.send(step, n * H)
    result = run.send(kind, 5 * H)
    assert rejected(result) == "invalid_transition"
    assert run.phase() == phase


def test_escalation_pauses_the_deadline_and_resume_keeps_the_time_left() -> None:
    run = Run()
    run.send("aftersale.requested", 0 * H)
    run.send("aftersale.escalated", 10 * H)  # 38 h were left
    run.until(30 * D)
    assert run.actions() == []  # paused deadlines never fire
    run.send("aftersale.resolved", 30 * D, decision="resume")
    case = run.engine.store["o-7"].open
    assert case is not None
    assert case.phase == "review"
    assert case.due_at == T0 + 30 * D + 38 * H
    run.until(31 * D + 14 * H)
    assert run.actions() == [("auto_approve", "merchant_review", at(30 * D + 38 * H))]


@pytest.mark.parametrize(("decision", "outcome"), [("refund", "refunded"), ("reject", "rejected")])
def test_resolved_refund_or_reject_closes(decision: str, outcome: str) -> None:
    run = Run()
    run.send("aftersale.requested", 0 * H)
    run.send("aftersale.escalated", 1 * H)
    run.send("aftersale.resolved", 2 * H, decision=decision)
    assert run.outcome() == outcome


def test_escalated_from_awaiting_refund_resumes_there() -> None:
    run = Run()
    run.send("aftersale.requested", 0 * H, kind="refund_only")
    run.send("aftersale.approved", 1 * H)
    run.send("aftersale.escalated", 2 * H)
    run.send("aftersale.resolved", 3 * H, decision="resume")
    assert run.phase() == "awaiting_refund"


def test_escalation_in_awaiting_receipt_resumes_merchant_receipt() -> None:
    run = Run()
    run.send("aftersale.requested", 0 * H)
    run.send("aftersale.approved", 1 * H)
    run.send("aftersale.return_shipped", 1 * D)  # merchant_receipt due at 11 D
    run.send("aftersale.escalated", 2 * D)  # 9 D left
    run.send("aftersale.resolved", 20 * D, decision="resume")
    run.until(40 * D)
    assert run.actions() == [("auto_refund", "merchant_receipt", at(29 * D))]
    assert run.outcome() == "refunded"


# --- cases on an order ------------------------------------------------------------------


def test_unknown_case_for_an_event_on_a_case_never_opened() -> None:
    run = Run()
    assert rejected(run.send("aftersale.approved", 0 * H)) == "unknown_case"
    run.send("aftersale.requested", 1 * H)
    assert rejected(run.send("aftersale.approved", 2 * H, case_id="c-other")) == "unknown_case"
    # case ids are per order: the same case id on another order is unknown there
    other = event("aftersale.approved", 3 * H, order_id="o-8")
    assert rejected(run.feed(other)) == "unknown_case"


def test_one_open_case_per_order_and_case_ids_never_reused() -> None:
    run = Run()
    run.send("aftersale.requested", 0 * H)
    assert rejected(run.send("aftersale.requested", 1 * H, case_id="c-43")) == "case_already_open"
    assert rejected(run.send("aftersale.requested", 1 * H)) == "case_already_open"
    run.send("aftersale.rejected", 2 * H)
    assert rejected(run.send("aftersale.requested", 3 * H)) == "case_already_open"
    assert run.send("aftersale.requested", 3 * H, case_id="c-43").verdict == "applied"
    assert run.phase() == "review"


def test_event_on_a_closed_case_is_invalid_transition() -> None:
    run = Run()
    run.send("aftersale.requested", 0 * H)
    run.send("aftersale.withdrawn", 1 * H)
    assert rejected(run.send("aftersale.approved", 2 * H)) == "invalid_transition"


def test_order_events_are_facts_and_do_not_close_cases() -> None:
    run = Run()
    assert run.send("order.cancelled", 0 * H, order_id="o-new").verdict == "applied"
    run.send("aftersale.requested", 0 * H)
    for kind in ("order.completed", "order.cancelled", "order.shipped", "order.paid"):
        assert run.send(kind, 1 * H).verdict == "applied"
    assert run.phase() == "review"


@pytest.mark.parametrize(
    ("delivered", "requested", "outcome"),
    [
        ([0 * D], 7 * D - timedelta(seconds=1), "applied"),
        ([0 * D], 7 * D, "not_eligible"),
        ([0 * D, 3 * D], 8 * D, "applied"),  # the latest delivery counts
        ([3 * D, 0 * D], 8 * D, "applied"),  # latest by occurred_at, not by arrival
        ([], 100 * D, "applied"),  # delivery never seen: eligible
    ],
)
def test_no_reason_window_after_latest_delivery(
    delivered: list[timedelta], requested: timedelta, outcome: str
) -> None:
    run = Run()
    for moment in delivered:
        run.send("order.delivered", moment)
    result = run.send("aftersale.requested", requested, reason="no_reason")
    assert (rejected(result) or result.verdict) == outcome


def test_other_reasons_are_never_window_bound() -> None:
    run = Run()
    run.send("order.delivered", 0 * D)
    assert run.send("aftersale.requested", 30 * D, reason="quality").verdict == "applied"


# --- deadlines ------------------------------------------------------------------------------


def test_merchant_review_auto_approves_return_refund_and_starts_buyer_return_at_deadline() -> None:
    run = Run()
    run.send("aftersale.requested", 0 * H)
    run.until(REVIEW - timedelta(microseconds=1))
    assert run.actions() == []  # never early
    run.until(REVIEW)
    assert run.actions() == [("auto_approve", "merchant_review", at(REVIEW))]
    case = run.engine.store["o-7"].open
    assert case is not None
    assert case.phase == "awaiting_return"
    assert case.due_at == T0 + REVIEW + 10 * D


def test_merchant_review_auto_refunds_refund_only_and_closes() -> None:
    run = Run()
    run.send("aftersale.requested", 0 * H, kind="refund_only", amount=1234, currency="USD")
    run.until(REVIEW)
    (action,) = [e for e in run.effects if isinstance(e, Action)]
    assert (action.type, action.amount, action.currency) == ("auto_refund", 1234, "USD")
    assert action.record(action.deadline_at)["action_id"] == "c-42:merchant_review"
    assert run.outcome() == "refunded"
    changes = [e for e in run.effects if isinstance(e, CaseChanged)]
    assert [(c.what, c.before, c.phase) for c in changes] == [
        ("aftersale.requested", None, "review"),
        ("auto_refund", "review", "closed"),
    ]
    closed = changes[-1]
    assert (closed.outcome, closed.cause, closed.first_refund) == ("refunded", "auto", True)


def test_buyer_return_auto_closes() -> None:
    run = Run()
    run.send("aftersale.requested", 0 * H)
    run.send("aftersale.approved", 2 * H)
    run.until(2 * H + 10 * D)
    assert run.actions() == [("auto_close", "buyer_return", at(2 * H + 10 * D))]
    assert run.outcome() == "auto_closed"


def test_merchant_receipt_auto_refunds() -> None:
    run = Run()
    run.send("aftersale.requested", 0 * H)
    run.send("aftersale.approved", 2 * H)
    run.send("aftersale.return_shipped", 1 * D)
    run.until(11 * D)
    assert run.actions() == [("auto_refund", "merchant_receipt", at(11 * D))]
    assert run.outcome() == "refunded"


def test_in_time_means_strictly_before_the_deadline() -> None:
    run = Run()
    run.send("aftersale.requested", 0 * H)
    result = run.send("aftersale.approved", REVIEW - timedelta(milliseconds=1))
    assert result.verdict == "applied"
    run2 = Run()
    run2.send("aftersale.requested", 0 * H)
    late = run2.send("aftersale.approved", REVIEW)
    assert rejected(late) == "invalid_transition"
    assert run2.actions() == [("auto_approve", "merchant_review", at(REVIEW))]


def test_a_waybill_after_the_auto_approval_instant_finds_the_case_awaiting_return() -> None:
    run = Run()
    run.send("aftersale.requested", 0 * H)
    assert run.send("aftersale.return_shipped", REVIEW + H).verdict == "applied"
    assert run.actions() == [("auto_approve", "merchant_review", at(REVIEW))]
    assert run.phase() == "awaiting_receipt"


def test_the_deadline_fires_before_the_record_only_up_to_fire_upto() -> None:
    # Live, a record stamped in the future makes nothing fire early: it is simply late.
    engine = Engine(Policy())
    engine.apply(event("aftersale.requested", 0 * H), T0)
    result = engine.apply(event("aftersale.approved", REVIEW + H), T0 + H)
    assert result.error is not None
    assert result.error.code == "invalid_transition"
    assert "late" in result.error.detail
    assert result.effects == []
    early = engine.advance(T0 + REVIEW - timedelta(microseconds=1))
    assert [type(e).__name__ for e in early] == ["Reminder", "Reminder"]
    fired = engine.advance(T0 + REVIEW)
    assert [type(e).__name__ for e in fired] == ["Action", "CaseChanged"]


def test_each_action_fires_once_and_the_wheel_is_empty_after() -> None:
    run = Run()
    run.send("aftersale.requested", 0 * H)
    run.until(100 * D)
    run.until(200 * D)
    assert len(run.actions()) == 2  # auto_approve, then auto_close
    assert run.engine.next_wakeup() is None


# --- reminders -------------------------------------------------------------------------------


def test_default_reminders_for_each_rule() -> None:
    run = Run()
    run.send("aftersale.requested", 0 * H)
    run.send("aftersale.approved", 47 * H)  # after both merchant_review reminders
    run.send("aftersale.return_shipped", 47 * H + 9 * D)  # after the buyer_return reminder
    run.until(100 * D)
    assert run.reminders() == [
        "c-42:merchant_review:86400",
        "c-42:merchant_review:7200",
        "c-42:buyer_return:172800",
        "c-42:merchant_receipt:172800",
    ]
    reminder = next(r for r in run.effects if isinstance(r, Reminder))
    record = reminder.record()
    assert record["audience"] == "merchant"
    assert record["remind_at"] == at(24 * H)
    assert record["deadline_at"] == at(48 * H)


def test_no_reminder_before_the_deadline_was_set_or_for_a_deadline_that_no_longer_applies() -> None:
    policy = Policy(reminders={"merchant_review": (), "buyer_return": (), "merchant_receipt": ()})
    run = Run(policy)
    run.send("aftersale.requested", 0 * H)
    run.until(100 * D)
    assert run.reminders() == []
    run2 = Run()
    run2.send("aftersale.requested", 0 * H)
    run2.send("aftersale.approved", 1 * H)  # the merchant_review reminders no longer apply
    run2.until(2 * D)
    assert run2.reminders() == []


def test_reminders_are_not_repeated_after_resume_and_skip_those_before_the_resume() -> None:
    run = Run()
    run.send("aftersale.requested", 0 * H)
    run.until(25 * H)  # 24 h reminder sent
    run.send("aftersale.escalated", 30 * H)  # 18 h left
    run.send("aftersale.resolved", 10 * D, decision="resume")  # due at 10 D + 18 h
    run.until(10 * D + 18 * H)
    assert run.reminders() == ["c-42:merchant_review:86400", "c-42:merchant_review:7200"]
    reminder = [r for r in run.effects if isinstance(r, Reminder)][1]
    assert reminder.remind_at == T0 + 10 * D + 16 * H


def test_fractional_offsets_in_notification_id() -> None:
    policy = Policy(
        deadlines={
            "merchant_review": timedelta(seconds=3),
            "buyer_return": D,
            "merchant_receipt": D,
        },
        reminders={
            "merchant_review": (timedelta(seconds=0.5),),
            "buyer_return": (),
            "merchant_receipt": (),
        },
    )
    run = Run(policy)
    run.send("aftersale.requested", 0 * H)
    run.until(timedelta(seconds=3))
    assert run.reminders() == ["c-42:merchant_review:0.5"]


# --- duplicates -----------------------------------------------------------------------------


def test_a_retried_event_is_a_duplicate_not_applied_twice_nor_dead_lettered() -> None:
    run = Run()
    first = event("aftersale.requested", 0 * H)
    assert run.feed(first).verdict == "applied"
    again = run.feed(first)
    assert again.verdict == "duplicate"
    assert again.error is None


def test_a_retry_of_a_refused_event_is_judged_again() -> None:
    run = Run()
    approval = event("aftersale.approved", 1 * H)
    assert rejected(run.feed(approval)) == "unknown_case"
    run.send("aftersale.requested", 0 * H)
    assert run.feed(approval).verdict == "applied"


def test_rebuild_reindexes_due_times_from_the_store() -> None:
    run = Run()
    run.send("aftersale.requested", 0 * H)
    fresh = Engine(Policy(), store=run.engine.store)
    assert fresh.next_wakeup() is None
    assert fresh.rebuild() == 1
    assert fresh.next_wakeup() == T0 + 24 * H


def test_advance_with_a_limit_takes_the_same_effects_a_chunk_at_a_time() -> None:
    # 50 cases requested within the same second (a promotion's burst): their deadlines and
    # reminders fire in the same order whether in one call or ten entries at a time.
    def burst() -> Engine:
        engine = Engine(Policy())
        for n in range(50):
            engine.apply(
                event("aftersale.requested", 0 * H, order_id=f"o-{n}", case_id=f"c-{n}"), T0
            )
        return engine

    whole = burst().advance(T0 + REVIEW)
    engine, chunked, calls = burst(), [], 0
    while fired := engine.advance(T0 + REVIEW, limit=10):
        chunked += fired
        calls += 1
    assert chunked == whole
    assert len([e for e in whole if isinstance(e, Action)]) == 50
    assert calls >= 15  # 150 entries (two reminders and a deadline per case), 10 per call
    assert engine.advance(T0 + REVIEW, limit=0) == []


# --- clock freezes -------------------------------------------------------------------------------


def test_a_freeze_moves_the_deadline_and_its_reminders_keep_their_offsets() -> None:
    # frozen from 30 h to 40 h after the request: the 48 h review ends at 58 h
    policy = Policy(freezes=merge_freezes([(T0 + 30 * H, T0 + 40 * H)]))
    run = Run(policy)
    run.send("aftersale.requested", 0 * H)
    run.until(58 * H - timedelta(microseconds=1))
    assert run.actions() == []
    reminders = [r for r in run.effects if isinstance(r, Reminder)]
    # 24 h and 2 h before the moved deadline (the first one falls within the freeze)
    assert [(r.remind_at - T0, r.deadline_at - T0) for r in reminders] == [
        (34 * H, 58 * H),
        (56 * H, 58 * H),
    ]
    run.until(58 * H)
    assert run.actions() == [("auto_approve", "merchant_review", format_time(T0 + 58 * H))]
    # the buyer's return starts at the deadline instant, outside the freeze: 10 days flat
    assert run.engine.next_wakeup() == T0 + 58 * H + 8 * D  # its 2-day reminder


def test_an_escalation_keeps_the_deadline_time_left_not_the_frozen_time() -> None:
    # escalated at 10 h with 38 h of review left; a freeze from 20 h to 30 h lay ahead of it
    policy = Policy(freezes=merge_freezes([(T0 + 20 * H, T0 + 30 * H)]))
    run = Run(policy)
    run.send("aftersale.requested", 0 * H)
    run.send("aftersale.escalated", 10 * H)
    # resumed at 25 h, within the freeze: the 38 h left run from its end, 30 h
    run.send("aftersale.resolved", 25 * H, decision="resume")
    run.until(68 * H)
    assert run.actions() == [("auto_approve", "merchant_review", format_time(T0 + 68 * H))]


# --- policy versions -----------------------------------------------------------------------------

VERSIONED = policy_from_mapping(
    {
        "versions": [
            {"deadlines": {"merchant_review": "PT48H", "buyer_return": "P10D"}},
            {
                "effective_from": format_time(T0 + 24 * H),
                "deadlines": {"merchant_review": "PT24H", "buyer_return": "P7D"},
                "reminders": {"merchant_review": ["PT1H"], "buyer_return": []},
            },
        ]
    }
)


def test_a_case_runs_under_the_version_in_force_at_its_request_to_its_end() -> None:
    run = Run(VERSIONED)
    run.send("aftersale.requested", 0 * H)  # before the change: 48 h, then 10 days
    run.send("aftersale.requested", 30 * H, order_id="o-8", case_id="c-8")  # after it
    run.until(30 * D)
    assert sorted(run.actions(), key=lambda a: a[2]) == [
        ("auto_approve", "merchant_review", format_time(T0 + 48 * H)),
        ("auto_approve", "merchant_review", format_time(T0 + 54 * H)),
        # auto-approved after the change, the first case still gets its 10 days
        ("auto_close", "buyer_return", format_time(T0 + 9 * D + 6 * H)),
        ("auto_close", "buyer_return", format_time(T0 + 12 * D)),
    ]
    first = {r for r in run.reminders() if r.startswith("c-42:")}
    second = {r for r in run.reminders() if r.startswith("c-8:")}
    assert first == {
        "c-42:merchant_review:86400",
        "c-42:merchant_review:7200",
        "c-42:buyer_return:172800",
    }
    assert second == {"c-8:merchant_review:3600"}


def test_a_request_at_the_effective_instant_takes_the_new_version() -> None:
    assert VERSIONED.version_at(T0 + 24 * H).deadlines["merchant_review"] == 24 * H
    assert VERSIONED.version_at(T0 + 24 * H - timedelta(microseconds=1)) is VERSIONED
    run = Run(VERSIONED)
    run.send("aftersale.requested", 24 * H)
    run.until(48 * H)
    assert run.actions() == [("auto_approve", "merchant_review", format_time(T0 + 48 * H))]


# --- a limit on the cases of one order ---------------------------------------------------------


def test_a_request_beyond_the_orders_case_limit_is_refused() -> None:
    run = Run(Policy(max_cases_per_order=2))
    run.send("aftersale.requested", 0 * H, case_id="c-1")
    run.send("aftersale.rejected", 1 * H, case_id="c-1")
    run.send("aftersale.requested", 2 * H, case_id="c-2")
    refused = run.send("aftersale.requested", 3 * H, case_id="c-3")  # c-2 is open
    assert refused.error is not None
    assert refused.error.code == "case_already_open"
    run.send("aftersale.withdrawn", 4 * H, case_id="c-2")
    third = run.send("aftersale.requested", 5 * H, case_id="c-3")
    assert third.verdict == "rejected"
    assert third.error is not None
    assert third.error.code == "case_limit_reached"
    assert "order o-7 has had 2 cases" in str(third.error)
    assert Run().send("aftersale.requested", 0 * H).verdict == "applied"  # no limit by default


# --- a refund request on an order not shipped yet ----------------------------------------------

UNSHIPPED = Policy(
    deadlines={**Policy().deadlines, "unshipped_review": 24 * H},
    reminders={**Policy().reminders, "unshipped_review": (2 * H,)},
)


def test_a_refund_request_before_shipment_has_its_own_review_then_an_auto_refund() -> None:
    run = Run(UNSHIPPED)
    run.send("order.paid", 0 * H)
    run.send("aftersale.requested", 1 * H, kind="refund_only")
    assert run.engine.store["o-7"].open is not None
    assert run.engine.store["o-7"].open.rule == "unshipped_review"
    run.until(25 * H)
    assert run.actions() == [("auto_refund", "unshipped_review", format_time(T0 + 25 * H))]
    assert run.reminders() == ["c-42:unshipped_review:7200"]
    assert run.outcome() == "refunded"


@pytest.mark.parametrize(
    ("shipped", "kind", "policy", "rule"),
    [
        (True, "refund_only", UNSHIPPED, "merchant_review"),  # shipped: the usual review
        (False, "return_refund", UNSHIPPED, "merchant_review"),  # a return: the usual review
        (False, "refund_only", Policy(), "merchant_review"),  # no unshipped review in the policy
    ],
)
def test_the_usual_review_runs_otherwise(
    shipped: bool, kind: str, policy: Policy, rule: str
) -> None:
    run = Run(policy)
    if shipped:
        run.send("order.shipped", 0 * H)
    run.send("aftersale.requested", 1 * H, kind=kind)
    case = run.engine.store["o-7"].open
    assert case is not None
    assert case.rule == rule


def test_the_merchant_answers_an_unshipped_refund_in_time() -> None:
    run = Run(UNSHIPPED)
    run.send("aftersale.requested", 0 * H, kind="refund_only")
    assert run.send("aftersale.approved", 23 * H).verdict == "applied"
    run.until(30 * H)
    assert run.actions() == []
    assert run.phase() == "awaiting_refund"
