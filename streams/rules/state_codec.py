"""Bytes of an `OrderState` for the state table: compact, versioned and deterministic.

`OrderState` and `Case` are msgspec Structs laid out as JSON arrays, so a state is encoded
and decoded by msgspec in one C call each way (the JSON-object format of version 1 was built
and read in Python: decoding is now 2.5-3x faster, encoding about 1.5x). Version 2:

    [2,                   format version (the Struct's tag)
     order_id,
     delivered_at,        instant or null
     paid, refunded,
     [event_id, ...],     sorted
     open case or null,
     {case_id: outcome, ...},   closed cases, keys sorted
     last_at,             instant or null: the latest instant the order saw (may be absent)
     shipped,             an order.shipped was seen (may be absent)
     merchant_refunds]    how many closed cases are the merchant's own refunds (may be absent)

and the open case is an array in `Case` field order:

    [case_id, order_id, kind, reason, amount, currency, merchant_id, buyer_id,
     phase, outcome, rule, set_at, due_at, remaining, [reminded, ...], resume_phase,
     version_from,        instant or null: the policy version's effective_from (may be absent)
     held,                null, or [rule, duration, [reminded, ...]]: the merchant's deadline
                          held while the buyer is asked for evidence (may be absent)
     evidence_asked]      the merchant asked for evidence on the case (may be absent)

An instant is RFC 3339 text in UTC (`2026-12-01T03:04:05.400000Z`), a duration ISO 8601
text (`P2DT3600S`). Equal states give equal bytes: event ids and closed-case keys are sorted.
Decoding validates every field against the Structs' types (phases, rules and outcomes are
their Literals) and that instants are UTC. An array longer than this build's Structs (state
written by a newer build) is refused; fields missing at its end take their defaults, so a
field appended with a default needs no new version. Bytes that are not version 2 raise
`ContractError`.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any, Final

import msgspec

from streams.contract.times import Instant
from streams.errors import ContractError
from streams.rules.cases import Case
from streams.rules.orders import OrderState

VERSION: Final = 2

#: "deterministic" sorts sets and dict keys: equal states, equal bytes.
_encoder: Final = msgspec.json.Encoder(order="deterministic")
_decoder: Final = msgspec.json.Decoder(OrderState)

encode: Final = _encoder.encode
"""The version-2 bytes of an `OrderState`."""


def decode_state(data: bytes) -> OrderState:
    """The `OrderState` encoded in `data`; ContractError if it is not version-2 state bytes."""
    state: OrderState = _decode(_decoder, data)
    # Instants are UTC (the engine makes no other): an offset would decode to an equal state
    # that encodes to other bytes.
    case = state.open
    instants = (
        (state.delivered_at, state.last_at)
        if case is None
        else (state.delivered_at, state.last_at, case.set_at, case.due_at)
    )
    for when in instants:
        if when is not None and when.tzinfo is not UTC:
            raise ContractError(
                f"order state version {VERSION} is malformed: {when.isoformat()} is not UTC"
            )
    return state


class DueView(msgspec.Struct, array_like=True, tag=VERSION, forbid_unknown_fields=True, gc=False):
    """What the due index needs of version-2 state bytes (the open case and the latest instant
    the order saw), read without building the rest: rebuilding the index of a million orders
    at a start decodes each once (`decode_due`)."""

    order_id: msgspec.Raw
    delivered_at: msgspec.Raw
    paid: msgspec.Raw
    refunded: msgspec.Raw
    event_ids: msgspec.Raw
    open: Case | None = None
    closed: msgspec.Raw = msgspec.Raw(b"{}")
    last_at: Instant | None = None
    shipped: msgspec.Raw = msgspec.Raw(b"false")
    merchant_refunds: msgspec.Raw = msgspec.Raw(b"0")


_due_decoder: Final = msgspec.json.Decoder(DueView)


def decode_due(data: bytes) -> DueView:
    """The open case and latest instant of version-2 state bytes (not checked as thoroughly
    as `decode_state`: the engine decodes an order fully before it acts on it);
    ContractError if they are not version-2 state bytes."""
    view: DueView = _decode(_due_decoder, data)
    return view


def _decode(decoder: msgspec.json.Decoder[Any], data: bytes) -> Any:
    try:
        return decoder.decode(data)
    except (msgspec.DecodeError, RecursionError) as error:
        # msgspec runs out of stack on deep nesting rather than refusing it
        raise ContractError(_why(data, error)) from None


def _why(data: bytes, error: Exception) -> str:
    """Name what is wrong with bytes the decoder refused: the version first."""
    try:
        obj: Any = msgspec.json.decode(data)
    except (msgspec.DecodeError, RecursionError):
        obj = None  # not JSON msgspec reads (or too deep for it): the first error says why
    if type(obj) is dict:  # version 1 was a JSON object: {"v": 1, ...}
        version: Any = obj.get("v")
    elif type(obj) is list and obj:
        version = obj[0]
    else:
        return f"order state is not a version {VERSION} array: {error}"
    if type(version) is not int or version != VERSION:
        return f"order state has format version {version!r:.40}; this build reads version {VERSION}"
    return f"order state version {VERSION} is malformed: {error}"
