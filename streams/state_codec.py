"""Bytes of an `OrderState` for the state table: compact, versioned and deterministic.

Version 1 is one JSON object (orjson, keys sorted):

    {"v": 1,              format version
     "id": order_id,
     "dl": delivered_at,  instant or null
     "pd": paid, "rf": refunded,
     "ev": [event_id, ...],           sorted
     "op": open case or null,
     "cl": {case_id: outcome, ...}}   closed cases

and the open case is an array in `Case` field order:

    [case_id, order_id, kind, reason, amount, currency, merchant_id, buyer_id,
     phase, outcome, rule, set_at, due_at, remaining, [reminded, ...], resume_phase]

An instant is integer microseconds since the Unix epoch (UTC), a duration integer
microseconds. Equal states give equal bytes: event ids are sorted and so are the keys of
`cl`. Bytes that are not version 1 raise `ContractError`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Final

import orjson

from streams.cases import Case
from streams.errors import ContractError
from streams.orders import OrderState
from streams.times import EPOCH

VERSION: Final = 1
#: `Case` fields in the order of the encoded array (a test checks it against the dataclass).
CASE_FIELDS: Final[tuple[str, ...]] = (
    "case_id",
    "order_id",
    "kind",
    "reason",
    "amount",
    "currency",
    "merchant_id",
    "buyer_id",
    "phase",
    "outcome",
    "rule",
    "set_at",
    "due_at",
    "remaining",
    "reminded",
    "resume_phase",
)

_US: Final = timedelta(microseconds=1)
_OPTIONS: Final = orjson.OPT_SORT_KEYS


def encode(state: OrderState) -> bytes:
    """The version-1 bytes of `state`."""
    # Written out field by field rather than through helpers: this runs once per event.
    case = state.open
    delivered = state.delivered_at
    open_case: list[Any] | None = None
    if case is not None:
        set_at, due_at, remaining = case.set_at, case.due_at, case.remaining
        open_case = [
            case.case_id,
            case.order_id,
            case.kind,
            case.reason,
            case.amount,
            case.currency,
            case.merchant_id,
            case.buyer_id,
            case.phase,
            case.outcome,
            case.rule,
            None if set_at is None else (set_at - EPOCH) // _US,
            None if due_at is None else (due_at - EPOCH) // _US,
            None if remaining is None else remaining // _US,
            [offset // _US for offset in case.reminded],
            case.resume_phase,
        ]
    return orjson.dumps(
        {
            "v": VERSION,
            "id": state.order_id,
            "dl": None if delivered is None else (delivered - EPOCH) // _US,
            "pd": state.paid,
            "rf": state.refunded,
            "ev": sorted(state.event_ids),
            "op": open_case,
            "cl": state.closed,
        },
        option=_OPTIONS,
    )


def decode_state(data: bytes) -> OrderState:
    """The `OrderState` encoded in `data`; ContractError if it is not version-1 state bytes."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise ContractError(f"order state is not valid JSON: {error}") from None
    if type(obj) is not dict:
        raise ContractError(f"order state is not a JSON object: {type(obj).__name__}")
    version = obj.get("v")
    if type(version) is not int or version != VERSION:
        raise ContractError(
            f"order state has format version {version!r}; this build reads version {VERSION}"
        )
    try:
        delivered = obj["dl"]
        closed = obj["cl"]
        if type(closed) is not dict:
            raise TypeError("closed cases are not an object")
        return OrderState(
            obj["id"],
            None if delivered is None else EPOCH + timedelta(0, 0, delivered),
            obj["pd"],
            obj["rf"],
            set(obj["ev"]),
            _decode_case(obj["op"]),
            closed,
        )
    except (KeyError, IndexError, TypeError, ValueError, OverflowError) as error:
        raise ContractError(f"order state version {VERSION} is malformed: {error!r}") from None


def _decode_case(fields: list[Any] | None) -> Case | None:
    if fields is None:
        return None
    (
        case_id,
        order_id,
        kind,
        reason,
        amount,
        currency,
        merchant_id,
        buyer_id,
        phase,
        outcome,
        rule,
        set_at,
        due_at,
        remaining,
        reminded,
        resume_phase,
    ) = fields
    return Case(
        case_id,
        order_id,
        kind,
        reason,
        amount,
        currency,
        merchant_id,
        buyer_id,
        phase,
        outcome,
        rule,
        None if set_at is None else EPOCH + timedelta(0, 0, set_at),
        None if due_at is None else EPOCH + timedelta(0, 0, due_at),
        None if remaining is None else timedelta(0, 0, remaining),
        tuple([timedelta(0, 0, offset) for offset in reminded]),
        resume_phase,
    )
