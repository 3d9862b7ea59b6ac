"""The outbox: state and outputs held until their commit, reads always see the newest state."""

from __future__ import annotations

from datetime import timedelta

import pytest

from streams.live.outbox import Batch, Outbox, Output
from streams.rules.engine import Engine
from streams.rules.orders import OrderState
from streams.rules.policy import Policy
from streams.rules.state_codec import decode_state
from tests.unit.factories import T0, DictLocalStore, event


def test_nothing_reaches_the_local_store_before_its_batch_settles() -> None:
    local = DictLocalStore()
    outbox = Outbox(5, local)
    engine = Engine(Policy(), store=outbox)
    engine.apply(event("aftersale.requested"), T0)
    outbox.emit("aftersale-actions", b"o-7", b"{}")
    assert local.data == {}
    assert outbox.pending
    assert outbox["o-7"].open is not None  # the engine reads its own write

    batch = outbox.take()
    assert batch.partition == 5
    assert list(batch.states) == [b"o-7"]
    assert decode_state(_encoded(batch)).open is not None
    assert batch.outputs == [Output("aftersale-actions", b"o-7", b"{}")]
    assert not outbox.pending
    assert local.data == {}
    assert outbox.get("o-7") is not None  # being committed: still visible

    batch.changelog_offset = 9
    outbox.settle(batch)
    assert local.writes == [({b"o-7": batch.states[b"o-7"]}, 9)]
    assert outbox.get("o-7") is not None  # now from the local store
    assert list(outbox) == ["o-7"]
    assert len(outbox) == 1
    engine.apply(event("aftersale.requested", order_id="o-8"), T0)  # written, not committed
    assert sorted(order_id for order_id, _ in outbox.states()) == ["o-7", "o-8"]


def test_a_later_write_wins_over_a_batch_in_flight() -> None:
    local = DictLocalStore()
    outbox = Outbox(0, local)
    engine = Engine(Policy(), store=outbox)
    engine.apply(event("aftersale.requested"), T0)
    first = outbox.take()
    engine.apply(event("aftersale.approved", timedelta(hours=1)), T0 + timedelta(hours=1))
    second = outbox.take()
    outbox.settle(first)
    # the first batch is in the local store, the second is still being committed
    state = outbox["o-7"]
    assert state.open is not None
    assert state.open.phase == decode_state(_encoded(second)).open.phase  # type: ignore[union-attr]
    assert state.open.phase != decode_state(_encoded(first)).open.phase  # type: ignore[union-attr]
    outbox.settle(second)
    assert local.data[b"o-7"] == second.states[b"o-7"]


def test_an_empty_take_is_falsy_and_a_missing_order_is_a_key_error() -> None:
    outbox = Outbox(0, DictLocalStore())
    assert not outbox.take()
    assert outbox.get("nope") is None
    with pytest.raises(KeyError, match="nope"):
        outbox["nope"]


def test_a_deleted_order_is_gone_at_once_and_a_tombstone_at_the_commit() -> None:
    local = DictLocalStore()
    outbox = Outbox(0, local)
    engine = Engine(Policy(), store=outbox)
    engine.apply(event("order.paid"), T0)
    engine.apply(event("order.paid", order_id="o-8"), T0)
    first = outbox.take()
    outbox.settle(first)
    assert set(local.data) == {b"o-7", b"o-8"}

    del outbox["o-7"]
    assert outbox.get("o-7") is None  # reads see the deletion before it is committed
    assert "o-7" not in outbox
    assert list(outbox) == ["o-8"]
    assert [order_id for order_id, _ in outbox.states()] == ["o-8"]
    assert "o-7" in outbox.unsettled()
    batch = outbox.take()
    assert batch.states == {b"o-7": None}  # a tombstone on the changelog
    assert outbox.get("o-7") is None  # still gone while being committed
    assert list(outbox) == ["o-8"]
    outbox.settle(batch)
    assert set(local.data) == {b"o-8"}
    assert outbox.get("o-7") is None

    engine.apply(event("order.paid"), T0)  # the order comes back as a new one
    assert outbox.get("o-7") is not None
    assert outbox.take().states[b"o-7"] is not None


def test_deleting_an_unknown_order_is_a_key_error() -> None:
    outbox = Outbox(0, DictLocalStore())
    with pytest.raises(KeyError, match="nope"):
        del outbox["nope"]
    outbox["o-1"] = OrderState("o-1")
    del outbox["o-1"]
    with pytest.raises(KeyError, match="o-1"):
        del outbox["o-1"]  # twice


def _encoded(batch: Batch, key: bytes = b"o-7") -> bytes:
    """The state `batch` writes for `key` (not a deletion)."""
    value = batch.states[key]
    assert value is not None
    return value


def test_records_for_other_partitions_are_pending_until_their_transaction_ends() -> None:
    outbox = Outbox(0, DictLocalStore())
    outbox.emit("actions", b"o-7", b"{}")  # for this partition: no matter
    assert not outbox.sends_elsewhere
    outbox.emit_to(Output("reroute", b"o-8", b"{}", partition=3))
    assert outbox.sends_elsewhere
    first = outbox.take()
    assert outbox.sends_elsewhere  # sent, its transaction not yet committed
    outbox.emit_to(Output("reroute", b"o-9", b"{}", partition=2))
    second = outbox.take()
    outbox.settle(first)
    assert outbox.sends_elsewhere  # the second is still in flight
    outbox.abandon(second)  # aborted: its reroute is lost until partition 0 is read again
    assert outbox.sends_elsewhere
    outbox.settle(outbox.take())
    assert outbox.sends_elsewhere  # for good: the partition's judged position overstates


def test_an_aborted_batch_without_records_for_elsewhere_loses_nothing_elsewhere() -> None:
    outbox = Outbox(0, DictLocalStore())
    outbox.emit_to(Output("reroute", b"o-8", b"{}", partition=3))
    outbox.settle(outbox.take())
    outbox.emit("actions", b"o-7", b"{}")
    outbox.abandon(outbox.take())
    assert not outbox.sends_elsewhere
