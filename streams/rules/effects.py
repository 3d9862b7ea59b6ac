"""What the engine asks the world to do: auto-actions, reminders, and facts for metrics.

Effects are immutable values. They are NamedTuples, not frozen dataclasses: one or more is
built for most records, and a frozen dataclass sets each field through object.__setattr__
(an Action cost 1.1 us to build that way). No two effect types have the same number of
fields, so a tuple's equality never mistakes one type for another.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal, NamedTuple

from streams.contract.times import format_seconds, format_time
from streams.contract.topics import ACTIONS, NOTIFICATIONS
from streams.rules.policy import Rule

ActionType = Literal["auto_approve", "auto_close", "auto_refund"]
Audience = Literal["merchant", "buyer"]
#: `reshipped`: an exchange's replacement or a repair's repaired goods were shipped.
CaseOutcome = Literal["rejected", "refunded", "withdrawn", "auto_closed", "reshipped"]
RefundCause = Literal["merchant", "auto", "platform"]
Phase = Literal[
    "review",
    "awaiting_return",
    "awaiting_receipt",
    "awaiting_refund",
    "escalated",
    "closed",
    "awaiting_evidence",
    "awaiting_reship",
    "awaiting_escalation",
]

AUDIENCE: dict[Rule, Audience] = {
    "merchant_review": "merchant",
    "buyer_return": "buyer",
    "merchant_receipt": "merchant",
    "unshipped_review": "merchant",
    "buyer_evidence": "buyer",
    "merchant_reship": "merchant",
    "merchant_repair": "merchant",
    "buyer_escalation": "buyer",
}


class Action(NamedTuple):
    """An auto-action taken when a deadline passed with nobody acting."""

    type: ActionType
    rule: Rule
    case_id: str
    order_id: str
    merchant_id: str
    buyer_id: str
    kind: str
    amount: int
    currency: str
    deadline_at: datetime

    @property
    def action_id(self) -> str:
        return f"{self.case_id}:{self.rule}"

    def record(self, fired_at: datetime) -> dict[str, Any]:
        """The `aftersale-actions` record; `fired_at` is when the system acted."""
        return {
            "action_id": self.action_id,
            "type": self.type,
            "rule": self.rule,
            "case_id": self.case_id,
            "order_id": self.order_id,
            "merchant_id": self.merchant_id,
            "buyer_id": self.buyer_id,
            "kind": self.kind,
            "amount": self.amount,
            "currency": self.currency,
            "deadline_at": format_time(self.deadline_at),
            "fired_at": format_time(fired_at),
        }


class Reminder(NamedTuple):
    """A reminder that a running deadline is near."""

    rule: Rule
    offset: timedelta
    case_id: str
    order_id: str
    merchant_id: str
    buyer_id: str
    deadline_at: datetime
    remind_at: datetime

    @property
    def notification_id(self) -> str:
        return f"{self.case_id}:{self.rule}:{format_seconds(self.offset)}"

    def record(self) -> dict[str, Any]:
        """The `aftersale-notifications` record."""
        return {
            "notification_id": self.notification_id,
            "type": "deadline_reminder",
            "audience": AUDIENCE[self.rule],
            "rule": self.rule,
            "case_id": self.case_id,
            "order_id": self.order_id,
            "merchant_id": self.merchant_id,
            "buyer_id": self.buyer_id,
            "deadline_at": format_time(self.deadline_at),
            "remind_at": format_time(self.remind_at),
        }


class CaseChanged(NamedTuple):
    """A case opened, moved, paused, resumed or closed: what it is now, and what it was (for
    metrics and the read side; nothing is written to the contract's topics for it)."""

    case_id: str
    order_id: str
    merchant_id: str
    kind: str
    reason: str
    amount: int
    currency: str
    #: What changed it: an event type (`aftersale.approved`) or an auto-action (`auto_approve`).
    what: str
    #: Business time of the change (the event's `occurred_at`, or the deadline instant).
    at: datetime
    #: The phase before (None: the case was just opened) and its running deadline's rule.
    before: Phase | None
    before_rule: Rule | None
    phase: Phase
    #: The running deadline after the change (None: none runs, or it is paused).
    rule: Rule | None
    due_at: datetime | None
    #: Time left on a paused deadline (while escalated).
    remaining: timedelta | None
    outcome: CaseOutcome | None
    #: Who decided a refund: `merchant` (the refund was paid after the merchant's own steps),
    #: `auto` (an auto_refund), `platform` (a `resolved: refund`); None for other outcomes.
    cause: RefundCause | None
    #: True when this closes the order's first refunded case (the refund rate counts orders).
    first_refund: bool

    @property
    def closed(self) -> bool:
        return self.outcome is not None


class OrderPaid(NamedTuple):
    """An order was seen paid for the first time (the refund rate's denominator)."""

    order_id: str
    merchant_id: str
    #: The payment's business time.
    at: datetime
    amount: int


class OrderForgotten(NamedTuple):
    """An order with no open case reached the end of the policy's `order_retention`: its state
    is deleted (a later record of it finds a new order)."""

    order_id: str
    #: The latest instant the order saw; retention counted from here.
    last_at: datetime
    #: When it was forgotten: `last_at` + the retention.
    at: datetime


Effect = Action | Reminder | CaseChanged | OrderPaid | OrderForgotten


def route(effects: list[Effect], fired_at: datetime | None) -> list[tuple[str, dict[str, Any]]]:
    """The output records `effects` become, each with its contract topic, in order: actions
    (stamped `fired_at`, or, when None as in replay, their deadline) and reminders; the facts
    kept for metrics and the read side become none. The one router of the worker and replay."""
    routed: list[tuple[str, dict[str, Any]]] = []
    for effect in effects:
        if type(effect) is Action:
            at = effect.deadline_at if fired_at is None else fired_at
            routed.append((ACTIONS, effect.record(at)))
        elif type(effect) is Reminder:
            routed.append((NOTIFICATIONS, effect.record()))
    return routed
