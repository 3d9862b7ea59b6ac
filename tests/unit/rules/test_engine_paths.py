"""The after-sale paths this project adds to the contract's tables (topics/README.md): the
evidence request, exchange and repair, the merchant's own refund and the escalation window
after a rejection, driven through the engine as replay and the worker do."""

from __future__ import annotations

from datetime import timedelta

import pytest

from streams.contract.times import format_time
from streams.rules.effects import CaseChanged, Reminder
from streams.rules.policy import Policy
from tests.unit.factories import T0
from tests.unit.rules.test_engine import Run, rejected

H = timedelta(hours=1)
D = timedelta(days=1)


def due(run: Run, order_id: str = "o-7") -> str | None:
    case = run.engine.store[order_id].open
    assert case is not None
    return None if case.due_at is None else format_time(case.due_at)


def at(delta: timedelta) -> str:
    return format_time(T0 + delta)


# --- the merchant asks the buyer for evidence ----------------------------------------------------


def test_evidence_holds_the_merchants_review_and_closes_the_case_if_the_buyer_sends_nothing() -> (
    None
):
    run = Run()
    run.send("aftersale.requested", 0 * H)
    run.send("aftersale.evidence_requested", 10 * H)
    assert run.phase() == "awaiting_evidence"
    assert due(run) == at(10 * H + 3 * D)  # the buyer's 3 days; the review (due 48 h) is held
    run.until(10 * D)
    assert run.actions() == [("auto_close", "buyer_evidence", at(10 * H + 3 * D))]
    assert run.reminders() == ["c-42:buyer_evidence:86400"]  # no merchant_review reminder
    assert run.outcome() == "auto_closed"


def test_the_merchants_review_resumes_with_the_time_it_had_left() -> None:
    run = Run()
    run.send("aftersale.requested", 0 * H)
    run.send("aftersale.evidence_requested", 10 * H)  # 38 h of the review left
    run.send("aftersale.evidence_provided", 20 * H)
    assert run.phase() == "review"
    assert due(run) == at(58 * H)
    run.until(58 * H)
    assert run.actions() == [("auto_approve", "merchant_review", at(58 * H))]
    # the review's reminders keep their offsets before the moved deadline
    reminders = [
        (r.notification_id, format_time(r.remind_at))
        for r in run.effects
        if isinstance(r, Reminder) and r.rule == "merchant_review"
    ]
    assert reminders == [
        ("c-42:merchant_review:86400", at(34 * H)),
        ("c-42:merchant_review:7200", at(56 * H)),
    ]


def test_a_reminder_sent_before_the_evidence_request_is_not_sent_again() -> None:
    run = Run()
    run.send("aftersale.requested", 0 * H)
    run.send("aftersale.evidence_requested", 30 * H)  # after the 24 h reminder (at 24 h)
    run.send("aftersale.evidence_provided", 40 * H)
    run.until(60 * H)
    review = [r for r in run.reminders() if ":merchant_review:" in r]
    assert review == ["c-42:merchant_review:86400", "c-42:merchant_review:7200"]
    assert run.actions() == [("auto_approve", "merchant_review", at(58 * H))]


def test_evidence_on_the_returned_goods_holds_the_merchants_receipt() -> None:
    run = Run()
    run.send("aftersale.requested", 0 * H)
    run.send("aftersale.approved", 1 * H)
    run.send("aftersale.return_shipped", 2 * H)  # receipt due 2 h + 10 days
    run.send("aftersale.evidence_requested", 1 * D + 2 * H)
    run.send("aftersale.evidence_provided", 3 * D + 2 * H)
    assert run.phase() == "awaiting_receipt"
    assert due(run) == at(12 * D + 2 * H)
    assert rejected(run.send("aftersale.received", 12 * D)) is None
    assert run.phase() == "awaiting_refund"


@pytest.mark.parametrize(
    ("steps", "code"),
    [
        # evidence is asked for only while the merchant decides (review, receipt)
        ((("aftersale.approved", 1),), "invalid_transition"),
        # evidence_provided only answers an evidence request
        ((), "invalid_transition"),
    ],
)
def test_evidence_events_out_of_their_phase_are_refused(
    steps: tuple[tuple[str, int], ...], code: str
) -> None:
    run = Run()
    run.send("aftersale.requested", 0 * H)
    for kind, hours in steps:
        run.send(kind, hours * H)
    event_type = "aftersale.evidence_requested" if steps else "aftersale.evidence_provided"
    assert rejected(run.send(event_type, 5 * H)) == code


def test_evidence_at_the_buyers_deadline_is_late() -> None:
    run = Run()
    run.send("aftersale.requested", 0 * H)
    run.send("aftersale.evidence_requested", 1 * H)
    assert rejected(run.send("aftersale.evidence_provided", 1 * H + 3 * D)) == "invalid_transition"
    assert run.outcome() == "auto_closed"


def test_an_escalation_during_evidence_pauses_the_buyers_time_and_keeps_the_merchants() -> None:
    run = Run()
    run.send("aftersale.requested", 0 * H)
    run.send("aftersale.evidence_requested", 8 * H)  # 40 h of review held; buyer due 80 h
    run.send("aftersale.escalated", 20 * H)  # 60 h of the buyer's time left
    run.send("aftersale.resolved", 5 * D, decision="resume")
    assert run.phase() == "awaiting_evidence"
    assert due(run) == at(5 * D + 60 * H)
    run.send("aftersale.evidence_provided", 6 * D)
    assert run.phase() == "review"
    assert due(run) == at(6 * D + 40 * H)


def test_evidence_time_held_excludes_a_freeze() -> None:
    freeze = (T0 + 20 * H, T0 + 30 * H)
    run = Run(Policy(freezes=(freeze,)))
    run.send("aftersale.requested", 0 * H)  # review due 58 h (48 h + the 10 h freeze)
    assert due(run) == at(58 * H)
    run.send("aftersale.evidence_requested", 10 * H)  # 38 h of review time left, not 48
    run.send("aftersale.evidence_provided", 2 * D)
    assert due(run) == at(2 * D + 38 * H)


# --- exchange (换货) and repair (维修) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "rule", "days"),
    [("exchange", "merchant_reship", 3), ("repair", "merchant_repair", 30)],
)
def test_the_merchant_must_ship_the_replacement_or_the_repair_after_receipt(
    kind: str, rule: str, days: int
) -> None:
    run = Run()
    run.send("aftersale.requested", 0 * H, kind=kind)
    run.send("aftersale.approved", 1 * H)
    assert run.phase() == "awaiting_return"  # the goods come back, as for a return
    run.send("aftersale.return_shipped", 2 * H)
    run.send("aftersale.received", 1 * D)
    assert run.phase() == "awaiting_reship"
    assert due(run) == at((1 + days) * D)
    run.until(40 * D)
    assert run.actions() == [("auto_refund", rule, at((1 + days) * D))]
    assert run.outcome() == "refunded"


def test_a_replacement_shipped_in_time_closes_the_case_reshipped() -> None:
    run = Run()
    run.send("aftersale.requested", 0 * H, kind="exchange")
    run.until(60 * H)  # the review lapses: the exchange is auto-approved, as a return is
    assert run.actions() == [("auto_approve", "merchant_review", at(48 * H))]
    run.send("aftersale.return_shipped", 3 * D)
    run.send("aftersale.received", 4 * D)
    assert rejected(run.send("aftersale.reshipped", 7 * D - timedelta(seconds=1))) is None
    run.until(20 * D)
    assert run.outcome() == "reshipped"
    assert len(run.actions()) == 1
    changed = [e for e in run.effects if isinstance(e, CaseChanged)]
    assert changed[-1].cause is None  # not a refund


def test_reshipped_is_refused_before_the_goods_came_back_and_for_a_return() -> None:
    run = Run()
    run.send("aftersale.requested", 0 * H, kind="repair")
    run.send("aftersale.approved", 1 * H)
    assert rejected(run.send("aftersale.reshipped", 2 * H)) == "invalid_transition"
    other = Run()
    other.send("aftersale.requested", 0 * H)  # return_refund: receipt leads to the refund
    other.send("aftersale.approved", 1 * H)
    other.send("aftersale.return_shipped", 2 * H)
    other.send("aftersale.received", 3 * H)
    assert other.phase() == "awaiting_refund"
    assert rejected(other.send("aftersale.reshipped", 4 * H)) == "invalid_transition"


# --- a refund the merchant makes without a request ------------------------------------------------


def test_a_merchants_own_refund_is_a_case_closed_refunded_at_once() -> None:
    run = Run()
    run.send("order.paid", 0 * H)
    result = run.send("aftersale.merchant_refunded", 1 * H, case_id="c-m1", amount=1200)
    assert rejected(result) is None
    assert run.outcome("c-m1") == "refunded"
    assert run.phase() == "none"
    (changed,) = [e for e in result.effects if isinstance(e, CaseChanged)]
    assert (changed.before, changed.phase, changed.outcome) == (None, "closed", "refunded")
    assert (changed.cause, changed.first_refund, changed.amount) == ("merchant", True, 1200)
    assert (changed.kind, changed.reason) == ("refund_only", "other")
    again = run.send("aftersale.merchant_refunded", 2 * H, case_id="c-m2", reason="logistics")
    (second,) = [e for e in again.effects if isinstance(e, CaseChanged)]
    assert (second.first_refund, second.reason) == (False, "logistics")  # the order counts once
    assert run.actions() == []


def test_a_merchants_own_refund_is_refused_while_a_case_is_open_or_with_a_used_case_id() -> None:
    run = Run()
    run.send("aftersale.requested", 0 * H, case_id="c-1")
    refused = run.send("aftersale.merchant_refunded", 1 * H, case_id="c-2")
    assert rejected(refused) == "case_already_open"
    assert "refund it with aftersale.refunded" in str(refused.error)
    run.send("aftersale.withdrawn", 2 * H, case_id="c-1")
    assert rejected(run.send("aftersale.merchant_refunded", 3 * H, case_id="c-1")) == (
        "case_already_open"
    )


def test_a_merchants_own_refund_does_not_count_toward_the_buyers_case_limit() -> None:
    run = Run(Policy(max_cases_per_order=1))
    run.send("aftersale.merchant_refunded", 0 * H, case_id="c-m1")
    assert rejected(run.send("aftersale.requested", 1 * H, case_id="c-1")) is None
    run.send("aftersale.withdrawn", 2 * H, case_id="c-1")
    assert rejected(run.send("aftersale.requested", 3 * H, case_id="c-2")) == "case_limit_reached"


# --- after a rejection, the buyer's window to escalate --------------------------------------------

WINDOW = Policy(deadlines={**Policy().deadlines, "buyer_escalation": 5 * D})


def test_a_rejection_stands_when_the_buyer_does_not_escalate_in_the_window() -> None:
    run = Run(WINDOW)
    run.send("aftersale.requested", 0 * H)
    run.send("aftersale.rejected", 1 * H)
    assert run.phase() == "awaiting_escalation"
    assert due(run) == at(1 * H + 5 * D)
    run.until(10 * D)
    assert run.actions() == [("auto_close", "buyer_escalation", at(1 * H + 5 * D))]
    assert run.outcome() == "rejected"
    assert rejected(run.send("aftersale.escalated", 11 * D)) == "invalid_transition"


def test_an_escalation_in_the_window_goes_to_the_platform() -> None:
    run = Run(WINDOW)
    run.send("aftersale.requested", 0 * H)
    run.send("aftersale.rejected", 1 * H)
    run.send("aftersale.escalated", 2 * D)
    run.send("aftersale.resolved", 4 * D, decision="refund")
    run.until(20 * D)
    assert run.actions() == []
    assert run.outcome() == "refunded"


def test_without_a_window_a_rejection_closes_the_case_and_cannot_be_escalated() -> None:
    run = Run()
    run.send("aftersale.requested", 0 * H)
    run.send("aftersale.rejected", 1 * H)
    assert run.outcome() == "rejected"
    assert rejected(run.send("aftersale.escalated", 2 * H)) == "invalid_transition"


def test_the_merchant_asks_for_evidence_once_per_case() -> None:
    run = Run()
    run.send("aftersale.requested", 0 * H)
    run.send("aftersale.evidence_requested", 1 * H)
    run.send("aftersale.evidence_provided", 2 * H)
    again = run.send("aftersale.evidence_requested", 3 * H)
    assert rejected(again) == "invalid_transition"
    assert "already asked for evidence" in str(again.error)
    assert run.phase() == "review"
