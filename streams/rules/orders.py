"""Per-order state and the pure functions the engine drives: apply an event, fire what is due.

All records of an order share a partition, so an order is the unit of state: its delivery time,
the event ids it has applied, its open case (at most one), the outcome of its closed cases and
the latest instant it saw (from which the policy's `order_retention` counts).
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from streams.contract.events import Event
from streams.contract.times import Instant
from streams.errors import (
    CaseAlreadyOpen,
    CaseLimitReached,
    InvalidTransition,
    NotEligible,
    UnknownCase,
)
from streams.rules.cases import Case
from streams.rules.effects import (
    CaseChanged,
    CaseOutcome,
    Effect,
    OrderForgotten,
    OrderPaid,
    Phase,
    RefundCause,
)
from streams.rules.policy import Policy, Rule


class OrderState(msgspec.Struct, array_like=True, tag=2, forbid_unknown_fields=True, gc=False):
    """Everything remembered about one order.

    A msgspec Struct that is also the state table's format (`state_codec`, version 2: the
    tag is the format version). Untracked by the garbage collector (`gc=False`): its set,
    dict and case never refer back to it.
    """

    order_id: str
    delivered_at: Instant | None = None
    paid: bool = False
    refunded: bool = False
    event_ids: set[str] = msgspec.field(default_factory=set)
    open: Case | None = None
    #: case_id -> outcome of every closed case (a case_id is never reused on an order).
    closed: dict[str, CaseOutcome] = msgspec.field(default_factory=dict)
    #: The latest instant the order saw: an applied event's `occurred_at` or a fired deadline.
    #: The policy's `order_retention` counts from here. (Last in the array: state written
    #: before it existed decodes with None, and such an order is kept until it changes.)
    last_at: Instant | None = None
    #: An `order.shipped` was seen. (Appended: state written before it decodes as not shipped.)
    shipped: bool = False
    #: How many of the closed cases are the merchant's own refunds (`aftersale.merchant_refunded`):
    #: `max_cases_per_order` counts the buyer's cases only. (Appended.)
    merchant_refunds: int = 0

    def next_due(self, policy: Policy) -> datetime | None:
        """When this order next needs the clock: a reminder or a deadline of its open case, or
        (with no open case) the end of its retention."""
        return next_due(self.open, self.last_at, policy)

    def fire_next(
        self, upto: datetime, policy: Policy, forget_upto: datetime | None = None
    ) -> list[Effect]:
        """Fire the earliest due reminder or deadline at or before `upto`; [] if none is due.

        An order past its retention by `forget_upto` (default `upto`) yields `[OrderForgotten]`
        (and again on every call): the caller deletes it.
        """
        case = self.open
        if case is None:
            expires = self._expiry(policy)
            if expires is None or expires > (upto if forget_upto is None else forget_upto):
                return []
            assert self.last_at is not None  # an expiry counts from it
            return [OrderForgotten(self.order_id, self.last_at, expires)]
        item = case.next_due(policy)
        if item is None or item[0] > upto:
            return []
        when, offset = item
        if offset is not None:
            return [case.remind(offset, when)]
        before, before_rule = case.phase, case.rule
        action = case.expire(policy)
        effects: list[Effect] = [action]
        self.seen(when)
        self._after_change(case, action.type, when, before, before_rule, effects)
        return effects

    def _expiry(self, policy: Policy) -> datetime | None:
        """When the policy's retention forgets this order (if it has no open case)."""
        return _expiry(self.last_at, policy)

    def seen(self, at: datetime) -> None:
        """The order saw instant `at` (an applied event, a fired deadline)."""
        last = self.last_at
        if last is None or at > last:
            self.last_at = at

    def apply(self, event: Event, policy: Policy) -> list[Effect]:
        """Apply a validated, not-yet-applied event; raise the InputError it deserves."""
        kind = event.type
        if kind.startswith("order."):
            # Order facts are most of the input: handled here rather than in a helper.
            if kind == "order.delivered":
                at, delivered = event.occurred_at, self.delivered_at
                if delivered is None or at > delivered:
                    self.delivered_at = at
            elif kind == "order.shipped":
                self.shipped = True
            elif kind == "order.paid" and not self.paid:
                self.paid = True
                body = event.body
                paid = OrderPaid(
                    self.order_id, body["merchant_id"], event.occurred_at, body["amount"]
                )
                return [paid]
            return []
        case_id = event.case_id
        case = self.open
        if kind == "aftersale.requested":
            return self._open(event, case_id, policy)
        if kind == "aftersale.merchant_refunded":
            return self._merchant_refund(event, case_id)
        if case is None or case.case_id != case_id:
            outcome = self.closed.get(case_id)
            if outcome is None:
                raise UnknownCase(f"case {case_id} was never opened on order {self.order_id}")
            raise InvalidTransition(f"{kind} is not allowed: case {case_id} is closed ({outcome})")
        before, before_rule = case.phase, case.rule if case.due_at is not None else None
        case.apply(event, policy)
        effects: list[Effect] = []
        self._after_change(case, kind, event.occurred_at, before, before_rule, effects)
        return effects

    def _check_new(self, case_id: str, also: str = "") -> None:
        """Refuse a new case `case_id` where one is open or the id was used."""
        if case_id in self.closed or (self.open is not None and self.open.case_id == case_id):
            raise CaseAlreadyOpen(f"case_id {case_id} is already used on order {self.order_id}")
        if self.open is not None:
            raise CaseAlreadyOpen(
                f"order {self.order_id} already has an open case {self.open.case_id}{also}"
            )

    def _merchant_refund(self, event: Event, case_id: str) -> list[Effect]:
        """The merchant refunds without a request: a case opened and closed `refunded` at once
        (it counts in the refund rate; no deadline, no no-reason window, no case limit)."""
        self._check_new(case_id, " (refund it with aftersale.refunded)")
        body = event.body
        case = Case(
            case_id,
            self.order_id,
            "refund_only",
            body.get("reason", "other"),
            int(body["amount"]),
            body.get("currency", "CNY"),
            body["merchant_id"],
            body["buyer_id"],
        )
        case.close("refunded")
        self.merchant_refunds += 1
        effects: list[Effect] = []
        self._after_change(case, event.type, event.occurred_at, None, None, effects)
        return effects

    def _open(self, event: Event, case_id: str, policy: Policy) -> list[Effect]:
        body = event.body
        self._check_new(case_id)
        at = event.occurred_at
        version = policy.version_at(at)  # the case runs under it to its end
        limit = version.max_cases_per_order
        opened = len(self.closed) - self.merchant_refunds
        if limit is not None and opened >= limit:
            raise CaseLimitReached(
                f"order {self.order_id} has had {opened} cases, the policy's max_cases_per_order"
            )
        if (
            body["reason"] == "no_reason"
            and self.delivered_at is not None
            and at >= self.delivered_at + version.no_reason_window
        ):
            raise NotEligible(
                f"no_reason request {case_id} is past the no-reason window after delivery"
            )
        case = Case(
            case_id,
            self.order_id,
            body["kind"],
            body["reason"],
            int(body["amount"]),
            body.get("currency", "CNY"),
            body["merchant_id"],
            body["buyer_id"],
            version_from=version.effective_from,
        )
        # A refund-only request on an order not shipped yet has its own, shorter review where
        # the policy gives one; it ends in an auto-refund.
        unshipped = (
            case.kind == "refund_only"
            and not self.shipped
            and "unshipped_review" in version.deadlines
        )
        case.start("unshipped_review" if unshipped else "merchant_review", at, policy)
        self.open = case
        effects: list[Effect] = []
        self._after_change(case, event.type, at, None, None, effects)
        return effects

    def _after_change(
        self,
        case: Case,
        what: str,
        at: datetime,
        before: Phase | None,
        before_rule: Rule | None,
        effects: list[Effect],
    ) -> None:
        """Say how `case` changed (and close it on the order when it closed)."""
        outcome = case.outcome
        cause: RefundCause | None = None
        first_refund = False
        if outcome is not None:
            if outcome == "refunded":
                cause = _CAUSES.get(what, "merchant")
                first_refund = not self.refunded
                self.refunded = True
            self.closed[case.case_id] = outcome
            self.open = None
        effects.append(
            CaseChanged(
                case.case_id,
                self.order_id,
                case.merchant_id,
                case.kind,
                case.reason,
                case.amount,
                case.currency,
                what,
                at,
                before,
                before_rule,
                case.phase,
                case.rule if case.due_at is not None else None,
                case.due_at,
                case.remaining,
                outcome,
                cause,
                first_refund,
            )
        )


#: Who decided a refund, by what closed the case (else: the merchant's own refund).
_CAUSES: dict[str, RefundCause] = {"auto_refund": "auto", "aftersale.resolved": "platform"}


def next_due(case: Case | None, last_at: datetime | None, policy: Policy) -> datetime | None:
    """`OrderState.next_due` of an order with open case `case` that last saw `last_at`."""
    if case is None:
        return _expiry(last_at, policy)
    item = case.next_due(policy)
    return None if item is None else item[0]


def _expiry(last_at: datetime | None, policy: Policy) -> datetime | None:
    keep = policy.order_retention
    return None if keep is None or last_at is None else last_at + keep
