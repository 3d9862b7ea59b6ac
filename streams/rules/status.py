"""The read side's feed (pure): what each change of an order becomes on `<app id>-status`.

The worker writes these records in the same Kafka transaction as the state change they
describe (so each appears once, exactly when the change commits), keyed by `order_id`; replay
can write them too (`aftersale replay --status`). A projector applies them to Redis
(`streams/readside/`). Records are changes, not snapshots, in order per order:

    order_paid       {type, order_id, merchant_id, at, amount}
    case             {type, order_id, merchant_id, case_id, kind, reason, amount, currency,
                      what, at, phase, rule, deadline_at, paused, remaining_s, outcome,
                      refund_cause, first_refund, fired_at}
    order_forgotten  {type, order_id, at}

`what` is the event type that changed the case (`aftersale.approved`) or the auto-action
(`auto_approve`, then `fired_at` says when the system acted); `at` is the change's business
time; `phase`/`rule`/`deadline_at` are the case after it (`rule` and `deadline_at` null when no
deadline runs; `paused` with `remaining_s` while escalated); `refund_cause` is `merchant`,
`auto` or `platform` for a case closed `refunded`, and `first_refund` says it is the order's
first refund (the refund rate counts orders). Times are RFC 3339 UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from streams.contract.times import format_time
from streams.rules.effects import CaseChanged, Effect, OrderForgotten, OrderPaid


def status_records(effects: list[Effect], fired_at: datetime | None) -> list[dict[str, Any]]:
    """The status records of `effects`, in order; an auto-action's says it was taken at
    `fired_at` (None: at its deadline, as in replay)."""
    records: list[dict[str, Any]] = []
    for effect in effects:
        if type(effect) is CaseChanged:
            records.append(_case(effect, fired_at))
        elif type(effect) is OrderPaid:
            records.append(
                {
                    "type": "order_paid",
                    "order_id": effect.order_id,
                    "merchant_id": effect.merchant_id,
                    "at": format_time(effect.at),
                    "amount": effect.amount,
                }
            )
        elif type(effect) is OrderForgotten:
            at = format_time(effect.at)
            records.append({"type": "order_forgotten", "order_id": effect.order_id, "at": at})
    return records


def _case(change: CaseChanged, fired_at: datetime | None) -> dict[str, Any]:
    auto = change.what.startswith("auto_")
    return {
        "type": "case",
        "order_id": change.order_id,
        "merchant_id": change.merchant_id,
        "case_id": change.case_id,
        "kind": change.kind,
        "reason": change.reason,
        "amount": change.amount,
        "currency": change.currency,
        "what": change.what,
        "at": format_time(change.at),
        "phase": change.phase,
        "rule": change.rule,
        "deadline_at": None if change.due_at is None else format_time(change.due_at),
        "paused": change.remaining is not None,
        "remaining_s": None if change.remaining is None else change.remaining.total_seconds(),
        "outcome": change.outcome,
        "refund_cause": change.cause,
        "first_refund": change.first_refund,
        "fired_at": format_time(fired_at or change.at) if auto else None,
    }
