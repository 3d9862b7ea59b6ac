"""Hypothesis strategies: random input sequences and short-deadline policies for the engine.

A `Scenario` is what a replay run needs: a policy, the record values (dicts, in file order)
and the `--until` instant. Sequences cover 1-3 orders with up to 4 cases each, every contract
type (weighted toward after-sale events), times that mostly move forward in half-hour steps
(so that events often land exactly on a deadline instant) with occasional jumps of days and
steps backwards, `Z`/`+08:00`/`-05:00` renderings, producer retries and a few refusable records.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from streams.rules.policy import RULES, Policy, policy_from_mapping

T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)

ORDER_TYPES: tuple[str, ...] = (
    "order.paid",
    "order.shipped",
    "order.delivered",
    "order.completed",
    "order.cancelled",
)
AFTERSALE_TYPES: tuple[str, ...] = (
    "aftersale.requested",
    "aftersale.approved",
    "aftersale.rejected",
    "aftersale.return_shipped",
    "aftersale.received",
    "aftersale.refunded",
    "aftersale.withdrawn",
    "aftersale.escalated",
    "aftersale.resolved",
    "aftersale.evidence_requested",
    "aftersale.evidence_provided",
    "aftersale.reshipped",
    "aftersale.merchant_refunded",
)
ALL_TYPES: tuple[str, ...] = ORDER_TYPES + AFTERSALE_TYPES

#: Types drawn at random, weighted toward after-sale events.
_WEIGHTED: tuple[str, ...] = (
    *ORDER_TYPES,
    "order.delivered",
    *(t for t in AFTERSALE_TYPES for _ in range(3)),
    "aftersale.requested",
    "aftersale.requested",
    "aftersale.escalated",
    "aftersale.resolved",
)

#: Plausible next events of a case, so that sequences reach the later phases often.
_NEXT: dict[str, tuple[str, ...]] = {
    "aftersale.requested": (
        "aftersale.approved",
        "aftersale.approved",
        "aftersale.rejected",
        "aftersale.escalated",
        "aftersale.withdrawn",
        "aftersale.evidence_requested",
    ),
    "aftersale.rejected": ("aftersale.escalated", "aftersale.escalated", "aftersale.requested"),
    "aftersale.evidence_requested": (
        "aftersale.evidence_provided",
        "aftersale.evidence_provided",
        "aftersale.escalated",
        "aftersale.withdrawn",
    ),
    "aftersale.evidence_provided": (
        "aftersale.approved",
        "aftersale.rejected",
        "aftersale.received",
        "aftersale.evidence_requested",
    ),
    "aftersale.approved": (
        "aftersale.return_shipped",
        "aftersale.return_shipped",
        "aftersale.escalated",
        "aftersale.refunded",
    ),
    "aftersale.return_shipped": (
        "aftersale.received",
        "aftersale.received",
        "aftersale.escalated",
        "aftersale.evidence_requested",
    ),
    "aftersale.received": ("aftersale.refunded", "aftersale.escalated", "aftersale.reshipped"),
    "aftersale.escalated": ("aftersale.resolved", "aftersale.resolved", "aftersale.refunded"),
    "aftersale.resolved": (
        "aftersale.approved",
        "aftersale.return_shipped",
        "aftersale.received",
        "aftersale.escalated",
        "aftersale.refunded",
        "aftersale.evidence_provided",
        "aftersale.reshipped",
    ),
}

#: After a case closed (or an unusual event): mostly a new case, sometimes a stray event.
_AFTER_CLOSE: tuple[str, ...] = ("aftersale.requested",) * 4 + AFTERSALE_TYPES

OFFSETS: dict[str, timezone] = {
    "Z": UTC,
    "+08:00": timezone(timedelta(hours=8)),
    "-05:00": timezone(timedelta(hours=-5)),
}
KINDS = ("refund_only", "return_refund", "exchange", "repair")
#: Types that open a case of their own (a merchant's own refund opens and closes one).
NEW_CASE = ("aftersale.requested", "aftersale.merchant_refunded")
REASONS = ("quality", "logistics", "not_as_described", "no_reason", "mistaken_order", "other")
DECISIONS = ("refund", "reject", "resume", "resume", "resume")


@dataclass(frozen=True, slots=True)
class Scenario:
    """A replay input: policy, record values in file order, and `--until`."""

    policy: Policy
    records: list[dict[str, Any]]
    until: datetime | None


def render(when: datetime, offset: str) -> str:
    """`when` as RFC 3339 in the offset named `Z`, `+08:00` or `-05:00` (same instant)."""
    local = when.astimezone(OFFSETS[offset]).replace(tzinfo=None)
    return local.isoformat() + offset


def case_id_of(order_no: int, case_no: int) -> str:
    """Case ids `c-1`..`c-4` for the first order, `c-5`..`c-8` for the second, and so on.

    Kept distinct across orders: `action_id` = `<case_id>:<rule>` must be unique.
    """
    return f"c-{order_no * 4 + case_no}"


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    """A policy with short deadlines (1-48 h) and a random subset of reminder offsets."""
    # (the unshipped review and the escalation window, this project's additions that run only
    # where a policy gives them, in some policies)
    deadlines = {
        rule: f"PT{draw(st.integers(1, 48))}H"
        for rule in RULES
        if rule not in ("unshipped_review", "buyer_escalation") or draw(st.booleans())
    }
    reminder_choices = st.sampled_from(["PT30M", "PT1H", "PT2H", "PT3H", "PT6H", "PT24H", "P2D"])
    reminders = {rule: draw(st.lists(reminder_choices, max_size=3, unique=True)) for rule in RULES}
    window = f"PT{draw(st.integers(1, 7 * 24))}H"
    first: dict[str, Any] = {
        "deadlines": deadlines,
        "reminders": reminders,
        "no_reason_window": window,
        "max_cases_per_order": draw(st.sampled_from((None, None, 1, 2, 3))),
    }
    if draw(st.integers(0, 2)) > 0:
        return policy_from_mapping({**first, "freezes": draw(freezes())})
    # a rule change: a second version, from a half hour within the scenarios' first days
    effective = T0 + _HALF_HOUR * draw(st.integers(0, 2 * 24 * 10))
    second: dict[str, Any] = {
        "effective_from": effective.isoformat(),
        "deadlines": {rule: f"PT{draw(st.integers(1, 48))}H" for rule in RULES},
    }
    if draw(st.booleans()):
        second["reminders"] = {rule: draw(st.lists(reminder_choices, max_size=2)) for rule in RULES}
    return policy_from_mapping({"versions": [first, second], "freezes": draw(freezes())})


_HALF_HOUR = timedelta(minutes=30)


@st.composite
def freezes(draw: st.DrawFn) -> list[dict[str, str]]:
    """None most often, else up to three clock freezes (they may overlap, nest or touch) in
    the scenarios' first days, on the half hours events happen at, in several offsets."""
    if draw(st.integers(0, 2)) > 0:
        return []
    periods = []
    for _ in range(draw(st.integers(1, 3))):
        start = T0 + _HALF_HOUR * draw(st.integers(-48, 2 * 24 * 12))
        end = start + _HALF_HOUR * draw(st.integers(1, 96))
        zone = timezone(timedelta(hours=draw(st.sampled_from((0, 8, -5)))))
        periods.append({"from": start.astimezone(zone).isoformat(), "to": end.isoformat()})
    return periods


@st.composite
def _step(draw: st.DrawFn) -> timedelta:
    category = draw(st.sampled_from(("small",) * 6 + ("hours",) * 3 + ("days", "back")))
    if category == "small":
        return timedelta(minutes=30 * draw(st.integers(0, 4)))
    if category == "hours":
        return timedelta(hours=draw(st.integers(1, 24)))
    if category == "days":
        return timedelta(days=draw(st.integers(1, 12)), hours=draw(st.sampled_from((0, 0, 1))))
    return -timedelta(minutes=30 * draw(st.integers(1, 8)))


def _fields(draw: st.DrawFn, kind: str, order_no: int) -> dict[str, Any]:
    """The type-specific fields of a valid record of type `kind`."""
    if kind == "order.paid":
        return {"merchant_id": f"m-{order_no}", "buyer_id": f"b-{order_no}", "amount": 5990}
    if kind == "order.shipped":
        out: dict[str, Any] = {"carrier": "SF"}
        if draw(st.booleans()):
            out["waybill"] = "SF1"
        return out
    if kind == "aftersale.requested":
        out = {
            "kind": draw(st.sampled_from(KINDS)),
            "reason": draw(st.sampled_from(REASONS)),
            "amount": draw(st.integers(0, 10_000)),
            "merchant_id": f"m-{order_no}",
            "buyer_id": f"b-{order_no}",
        }
        currency = draw(st.sampled_from((None, None, "CNY", "USD")))
        if currency is not None:
            out["currency"] = currency
        return out
    if kind == "aftersale.rejected":
        return {"note": "no"} if draw(st.booleans()) else {}
    if kind == "aftersale.return_shipped":
        return {"carrier": "YTO", "waybill": "YT1"}
    if kind == "aftersale.reshipped":
        return {"carrier": "SF", "waybill": "SF9"}
    if kind == "aftersale.merchant_refunded":
        out = {
            "amount": draw(st.integers(0, 10_000)),
            "merchant_id": f"m-{order_no}",
            "buyer_id": f"b-{order_no}",
        }
        if draw(st.booleans()):
            out["reason"] = draw(st.sampled_from(REASONS))
        return out
    if kind == "aftersale.refunded":
        return {"amount": draw(st.integers(0, 10_000))} if draw(st.booleans()) else {}
    if kind == "aftersale.resolved":
        return {"decision": draw(st.sampled_from(DECISIONS))}
    return {}


def _garble(draw: st.DrawFn, record: dict[str, Any]) -> dict[str, Any]:
    """A record that validation refuses (unknown type, bad enum, bad time, missing field)."""
    how = draw(st.sampled_from(("type", "enum", "time", "missing")))
    out = dict(record)
    if how == "type":
        out["type"] = "aftersale.exchanged"
    elif how == "enum":
        out["type"] = "aftersale.requested"
        out.setdefault("case_id", "c-1")
        out.update(kind="swap", reason="quality", amount=1, merchant_id="m", buyer_id="b")
    elif how == "time":
        out["occurred_at"] = "2026-11-01 10:00:00"
    else:
        del out["event_id"]
    return out


@st.composite
def scenarios(
    draw: st.DrawFn,
    max_orders: int = 3,
    cases_per_order: int = 4,
    max_records: int = 30,
    garbage: bool = True,
) -> Scenario:
    """A policy and a random sequence of record values, as replay reads them."""
    policy = draw(policies())
    n_orders = draw(st.integers(1, max_orders))
    n_records = draw(st.integers(1, max_records))
    offset_names = st.sampled_from(("Z", "Z", "+08:00", "-05:00"))
    records: list[dict[str, Any]] = []
    last_type: dict[tuple[int, int], str] = {}
    current: dict[int, int] = {}
    next_case = dict.fromkeys(range(n_orders), 1)
    at = T0
    for n in range(n_records):
        if records and draw(st.integers(0, 9)) == 0:
            records.append(dict(draw(st.sampled_from(records))))  # a producer retry
            continue
        at += draw(_step())
        order_no = draw(st.integers(0, n_orders - 1))
        case_no = current.get(order_no)
        if case_no is None and draw(st.booleans()):
            kind, case_no = "aftersale.requested", next_case[order_no]
            next_case[order_no] = min(case_no + 1, cases_per_order)
            current[order_no] = case_no
        elif case_no is not None and draw(st.integers(0, 2)) > 0:
            options = _NEXT.get(last_type.get((order_no, case_no), ""), _AFTER_CLOSE)
            kind = draw(st.sampled_from(options))
            if kind in NEW_CASE:
                case_no = next_case[order_no]
                next_case[order_no] = min(case_no + 1, cases_per_order)
                current[order_no] = case_no
        else:
            kind = draw(st.sampled_from(_WEIGHTED))
            if kind in NEW_CASE and draw(st.integers(0, 3)) > 0:
                case_no = next_case[order_no]
                next_case[order_no] = min(case_no + 1, cases_per_order)
            elif case_no is None or draw(st.integers(0, 3)) == 0:
                case_no = draw(st.integers(1, cases_per_order))
            if kind == "aftersale.requested":
                current[order_no] = case_no
        record: dict[str, Any] = {
            "event_id": f"e-{n + 1}",
            "type": kind,
            "order_id": f"o-{order_no + 1}",
            "occurred_at": render(at, draw(offset_names)),
        }
        if kind.startswith("aftersale."):
            record["case_id"] = case_id_of(order_no, case_no)
            last_type[(order_no, case_no)] = kind
        record.update(_fields(draw, kind, order_no + 1))
        if garbage and draw(st.integers(0, 24)) == 0:
            record = _garble(draw, record)
        records.append(record)
    until = None
    if draw(st.integers(0, 4)) > 0:
        until = at + timedelta(hours=draw(st.integers(0, 30 * 24)))
    return Scenario(policy, records, until)


def single_case_scenarios() -> st.SearchStrategy[Scenario]:
    """Sequences over one order and one case (`c-1`), for the reference-model test."""
    return scenarios(max_orders=1, cases_per_order=1, max_records=25)
