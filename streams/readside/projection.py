"""The read side's projection, pure: status records in, order views and merchant counts out.

`project(view, record)` applies one record of `<app id>-status` (`streams/rules/status.py`) to
the view of its order and returns the merchant counts it adds. It is the only place the view
is computed: `Projection` (in memory) and the Redis adapter (`redis_store.py`, through
`plan_batch`) both call it, so Redis can be compared with the projection of the same records.

The arithmetic of refund rates lives here too: `window_days`, `WindowCounts` and `rank`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from fractions import Fraction
from typing import Annotated, Any, Final, Literal, NamedTuple

import msgspec

from streams.errors import ContractError

#: Entries kept in a case's history; older ones are dropped (and counted) beyond this.
HISTORY_LIMIT: Final = 100
#: Identifier bounds of the contract (order_id, case_id, merchant_id: 1 to 256 characters).
MAX_ID_CHARS: Final = 256

CountKind = Literal["paid", "refunded"]
PAID: Final[CountKind] = "paid"
REFUNDED: Final[CountKind] = "refunded"

_Time = Annotated[str, msgspec.Meta(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")]
_Id = Annotated[str, msgspec.Meta(min_length=1)]


# --------------------------------------------------------------------------- the records


class OrderPaidRecord(msgspec.Struct, frozen=True, tag_field="type", tag="order_paid"):
    """An order was seen paid (counted on the business day of `at`)."""

    order_id: _Id
    merchant_id: _Id
    at: _Time
    amount: int


class CaseRecord(msgspec.Struct, frozen=True, tag_field="type", tag="case"):
    """A case opened, moved, paused, resumed or closed: the case after the change."""

    order_id: _Id
    merchant_id: _Id
    case_id: _Id
    kind: str
    reason: str
    amount: int
    currency: str
    what: str
    at: _Time
    phase: str
    rule: str | None
    deadline_at: _Time | None
    paused: bool
    remaining_s: float | None
    outcome: str | None
    refund_cause: str | None
    first_refund: bool
    fired_at: _Time | None


class OrderForgottenRecord(msgspec.Struct, frozen=True, tag_field="type", tag="order_forgotten"):
    """The worker forgot the order (its `order_retention` ended)."""

    order_id: _Id
    at: _Time


StatusRecord = OrderPaidRecord | CaseRecord | OrderForgottenRecord
_decode = msgspec.json.Decoder(StatusRecord).decode


def decode_record(raw: bytes) -> StatusRecord:
    """A status record from its JSON bytes; ContractError (with a short reason) if it is not
    one. Unknown extra fields are ignored; an unknown `type` is refused."""
    try:
        return _decode(raw)
    except msgspec.DecodeError as exc:
        raise ContractError(f"not a status record: {exc}") from None


def day_of(at: str) -> str:
    """The UTC business day (YYYY-MM-DD) of a record time (always UTC with `Z`)."""
    return at[:10]


# --------------------------------------------------------------------------- the view


class Count(NamedTuple):
    """One order to count for a merchant on a day: paid, or refunded (its first refund)."""

    merchant_id: str
    day: str
    kind: CountKind


@dataclass(slots=True)
class OrderView:
    """What the read side knows of one order: `meta` (None: no such order) and its cases.

    `meta` = {order_id, merchant_id, paid, paid_at, amount, refunded, case_ids}; a case =
    {case_id, kind, reason, amount, currency, opened_at, phase, deadline, outcome,
    refund_cause, history, history_dropped}, `deadline` = {rule, deadline_at, paused,
    remaining_s} or None.

    An adapter may load only the cases its records touch: `project` reads no other.
    `cleared` and `touched` say what to write back: `cleared`, delete the stored order first;
    `touched`, the fields changed since (`"meta"` and case ids).
    """

    order_id: str
    meta: dict[str, Any] | None = None
    cases: dict[str, dict[str, Any]] = field(default_factory=dict)
    cleared: bool = False
    touched: set[str] = field(default_factory=set)

    def document(self) -> dict[str, Any]:
        """The order as the API shows it: its meta (less `case_ids`) and its cases in the
        order they were opened."""
        assert self.meta is not None
        out = {k: v for k, v in self.meta.items() if k != "case_ids"}
        cases = self.cases
        out["cases"] = [cases[cid] for cid in self.meta["case_ids"] if cid in cases]
        return out


META: Final = "meta"


def _new_meta(order_id: str, merchant_id: str) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "merchant_id": merchant_id,
        "paid": False,
        "paid_at": None,
        "amount": None,
        "refunded": False,
        "case_ids": [],
    }


def project(view: OrderView, record: StatusRecord) -> list[Count]:
    """Apply `record` (of `view`'s order) to `view`; return what it adds to merchant counts.

    - order_paid: the order is paid (when, how much, to which merchant); one paid order for
      its merchant on its day.
    - case: the case as the record says, its running or paused deadline, one more history
      entry; a case closed `refunded` marks the order refunded, and its `first_refund` counts
      one refunded order for the case's merchant on the record's day.
    - order_forgotten: the order is dropped (see the package's docstring); counts stay.
    """
    if type(record) is CaseRecord:
        return _case(view, record)
    if type(record) is OrderPaidRecord:
        meta = view.meta
        if meta is None:
            meta = view.meta = _new_meta(record.order_id, record.merchant_id)
        meta.update(
            merchant_id=record.merchant_id, paid=True, paid_at=record.at, amount=record.amount
        )
        view.touched.add(META)
        return [Count(record.merchant_id, day_of(record.at), PAID)]
    assert type(record) is OrderForgottenRecord
    view.meta = None
    view.cases = {}
    view.cleared = True
    view.touched = set()
    return []


def _case(view: OrderView, record: CaseRecord) -> list[Count]:
    meta = view.meta
    touched = view.touched
    if meta is None:
        meta = view.meta = _new_meta(record.order_id, record.merchant_id)
        touched.add(META)
    case_id = record.case_id
    case = view.cases.get(case_id)
    previous = None if case is None else case["deadline"]
    if case is None:
        # a case's first record is normally its `aftersale.requested`
        case = view.cases[case_id] = {
            "case_id": case_id,
            "kind": record.kind,
            "reason": record.reason,
            "amount": record.amount,
            "currency": record.currency,
            "opened_at": record.at,
            "phase": record.phase,
            "deadline": None,
            "outcome": None,
            "refund_cause": None,
            "history": [],
            "history_dropped": 0,
        }
        if case_id not in meta["case_ids"]:
            meta["case_ids"].append(case_id)
        touched.add(META)
    deadline: dict[str, Any] | None
    if record.paused:
        # a paused record names no rule: the paused deadline is the one that ran before
        rule = record.rule if record.rule is not None else _rule_of(previous)
        deadline = {
            "rule": rule,
            "deadline_at": None,
            "paused": True,
            "remaining_s": record.remaining_s,
        }
    elif record.rule is not None:
        deadline = {
            "rule": record.rule,
            "deadline_at": record.deadline_at,
            "paused": False,
            "remaining_s": None,
        }
    else:
        deadline = None
    case.update(
        kind=record.kind,
        reason=record.reason,
        amount=record.amount,
        currency=record.currency,
        phase=record.phase,
        deadline=deadline,
        outcome=record.outcome,
        refund_cause=record.refund_cause,
    )
    history: list[dict[str, Any]] = case["history"]
    history.append(
        {"what": record.what, "at": record.at, "phase": record.phase, "fired_at": record.fired_at}
    )
    if len(history) > HISTORY_LIMIT:
        del history[0]
        case["history_dropped"] += 1
    touched.add(case_id)
    if record.outcome == "refunded" and not meta["refunded"]:
        meta["refunded"] = True
        touched.add(META)
    if record.first_refund:
        return [Count(record.merchant_id, day_of(record.at), REFUNDED)]
    return []


def _rule_of(deadline: dict[str, Any] | None) -> str | None:
    return None if deadline is None else deadline["rule"]


# --------------------------------------------------------------------------- refund rates


def window_days(end: date, days: int) -> list[str]:
    """The `days` business days (YYYY-MM-DD) of a window that ends with day `end`, oldest
    first. ValueError if the window would start before year 1."""
    if days < 1:
        raise ValueError("a window has at least one day")
    first = end - timedelta(days=days - 1)  # OverflowError before year 1
    return [(first + timedelta(days=n)).isoformat() for n in range(days)]


class WindowCounts(NamedTuple):
    """A merchant's orders paid and orders refunded (first refunds) over a window's days."""

    merchant_id: str
    paid_orders: int
    refunded_orders: int

    @property
    def refund_rate(self) -> float | None:
        """Refunded orders / paid orders of the window; None with no paid order."""
        return self.refunded_orders / self.paid_orders if self.paid_orders else None


def rank(candidates: Iterable[WindowCounts], min_paid: int, limit: int) -> list[WindowCounts]:
    """The `limit` merchants with the highest refund rate among those with at least
    `min_paid` (>= 1) paid orders: rate (compared exactly) descending, then more paid orders
    first, then merchant id."""
    if min_paid < 1:
        raise ValueError("min_paid must be >= 1")
    eligible = [c for c in candidates if c.paid_orders >= min_paid]
    eligible.sort(key=lambda c: (-Fraction(c.refunded_orders, c.paid_orders), -c.paid_orders, c))
    return eligible[:limit]


def sum_days(by_day: Mapping[str, int], days: Sequence[str]) -> int:
    return sum(by_day.get(day, 0) for day in days)


# --------------------------------------------------------------------------- in memory


@dataclass(slots=True)
class Projection:
    """The whole read side in memory: order views, per-merchant daily counts, and the last
    applied offset of each partition (records at or before it are skipped, as in Redis)."""

    orders: dict[str, OrderView] = field(default_factory=dict)
    #: kind -> merchant -> day -> orders
    counts: dict[CountKind, dict[str, dict[str, int]]] = field(
        default_factory=lambda: {PAID: {}, REFUNDED: {}}
    )
    offsets: dict[int, int] = field(default_factory=dict)

    def apply(
        self, record: StatusRecord, partition: int | None = None, offset: int | None = None
    ) -> bool:
        """Apply `record`; with an offset, only if it is past the partition's last applied
        one. True if applied."""
        if partition is not None and offset is not None:
            if offset <= self.offsets.get(partition, -1):
                return False
            self.offsets[partition] = offset
        order_id = record.order_id
        view = self.orders.get(order_id) or OrderView(order_id)
        for count in project(view, record):
            self.add(count, 1)
        if view.meta is None:
            self.orders.pop(order_id, None)
        else:
            view.cleared, view.touched = False, set()
            self.orders[order_id] = view
        return True

    def add(self, count: Count, n: int) -> None:
        days = self.counts[count.kind].setdefault(count.merchant_id, {})
        days[count.day] = days.get(count.day, 0) + n

    def apply_all(self, records: Iterable[StatusRecord]) -> Projection:
        for record in records:
            self.apply(record)
        return self

    # reads (the API's, through a store)

    def merchant_window(self, merchant_id: str, days: Sequence[str]) -> WindowCounts | None:
        """The merchant's counts over `days`; None for a merchant never counted."""
        paid = self.counts[PAID].get(merchant_id)
        refunded = self.counts[REFUNDED].get(merchant_id)
        if paid is None and refunded is None:
            return None
        return WindowCounts(merchant_id, sum_days(paid or {}, days), sum_days(refunded or {}, days))

    def candidates(self, days: Sequence[str], min_paid: int) -> list[WindowCounts]:
        """Every merchant with at least `min_paid` paid orders over `days`, with its counts."""
        refunded = self.counts[REFUNDED]
        out = []
        for merchant_id, by_day in self.counts[PAID].items():
            paid = sum_days(by_day, days)
            if paid >= min_paid:
                out.append(
                    WindowCounts(merchant_id, paid, sum_days(refunded.get(merchant_id, {}), days))
                )
        return out

    def snapshot(self) -> Snapshot:
        """Everything, in the canonical form a Redis dump is compared with."""
        return Snapshot(
            orders={
                oid: {"meta": view.meta, "cases": dict(view.cases)}
                for oid, view in self.orders.items()
            },
            counts={
                kind: {m: dict(days) for m, days in merchants.items() if days}
                for kind, merchants in self.counts.items()
            },
            offsets=dict(self.offsets),
        )


@dataclass(slots=True)
class Snapshot:
    """The read side's whole content: orders (meta and cases), kind -> merchant -> day ->
    count, and partition -> last applied offset."""

    orders: dict[str, dict[str, Any]]
    counts: dict[str, dict[str, dict[str, int]]]
    offsets: dict[int, int]

    def by_day(self) -> dict[str, dict[str, dict[str, int]]]:
        """The counts turned around: kind -> day -> merchant -> count (the ranking's index)."""
        out: dict[str, dict[str, dict[str, int]]] = {}
        for kind, merchants in self.counts.items():
            days: dict[str, dict[str, int]] = out.setdefault(kind, {})
            for merchant, by_day in merchants.items():
                for day, n in by_day.items():
                    days.setdefault(day, {})[merchant] = n
        return out


# --------------------------------------------------------------------------- batches


class Delivered(NamedTuple):
    """A record as consumed: its partition, offset, and the record (None: undecodable, it is
    skipped but its offset still counts as applied)."""

    partition: int
    offset: int
    record: StatusRecord | None


@dataclass(slots=True)
class Plan:
    """What one batch changes: the views of the orders it touched, the counts to add, and
    the last offset of each partition it covers."""

    views: dict[str, OrderView]
    counts: dict[Count, int]
    offsets: dict[int, int]
    applied: int = 0


def needed_fields(batch: Iterable[Delivered]) -> dict[str, list[str]]:
    """Per order, the stored fields `plan_batch` reads: its meta (first) and each case a
    record of the batch names (by case id, once each)."""
    needed: dict[str, list[str]] = {}
    for item in batch:
        record = item.record
        if record is None:
            continue
        fields = needed.get(record.order_id)
        if fields is None:
            fields = needed[record.order_id] = [META]
        if type(record) is CaseRecord and record.case_id not in fields:
            fields.append(record.case_id)
    return needed


def plan_batch(batch: Iterable[Delivered], loaded: Mapping[str, OrderView]) -> Plan:
    """Apply a batch, in order, over the orders as stored (`loaded`: at least the fields of
    `needed_fields`, freshly read: its views are changed in place and returned); the records
    must all be past their partition's stored offset."""
    views: dict[str, OrderView] = {}
    counts: dict[Count, int] = {}
    offsets: dict[int, int] = {}
    applied = 0
    for item in batch:
        offsets[item.partition] = item.offset
        record = item.record
        if record is None:
            continue
        applied += 1
        order_id = record.order_id
        view = views.get(order_id)
        if view is None:
            view = views[order_id] = loaded.get(order_id) or OrderView(order_id)
        for count in project(view, record):
            counts[count] = counts.get(count, 0) + 1
    return Plan(views, counts, offsets, applied)
