"""The policy's `order_retention`: an order with no open case is forgotten, on time, once."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from streams.contract.times import EPOCH
from streams.live.outbox import Outbox
from streams.rules.effects import Action, CaseChanged, Effect, OrderForgotten, Reminder
from streams.rules.engine import Engine
from streams.rules.policy import Policy
from tests.unit.factories import T0, DictLocalStore, event
from tests.unit.rules.test_properties import PROPS, drive
from tests.unit.strategies import Scenario, scenarios

H = timedelta(hours=1)
D = timedelta(days=1)
KEEP = 30 * D


def engine(keep: timedelta | None = KEEP) -> Engine:
    return Engine(Policy(order_retention=keep))


def forgotten(effects: list[Effect]) -> list[OrderForgotten]:
    return [e for e in effects if isinstance(e, OrderForgotten)]


def test_an_order_without_a_case_is_forgotten_at_its_last_instant_plus_the_retention() -> None:
    eng = engine()
    eng.apply(event("order.paid", T0), T0)
    eng.apply(event("order.delivered", T0 + 3 * D), T0 + 3 * D)
    expires = T0 + 3 * D + KEEP
    # The wheel keeps the entry of the first record (a lower bound): when reached, it
    # fires nothing and re-indexes the order at its real expiry.
    assert eng.next_wakeup() == T0 + KEEP
    assert eng.advance(expires - timedelta(microseconds=1)) == []
    assert "o-7" in eng.store
    assert eng.next_wakeup() == expires
    assert eng.advance(expires) == [OrderForgotten("o-7", T0 + 3 * D, expires)]
    assert "o-7" not in eng.store
    assert eng.next_wakeup() is None
    assert eng.advance(expires + KEEP) == []  # once


def test_an_event_stamped_earlier_does_not_shorten_the_retention() -> None:
    eng = engine()
    eng.apply(event("order.delivered", T0 + 5 * D), T0 + 5 * D)
    eng.apply(event("order.paid", T0), T0 + 5 * D)  # a late fact, stamped before
    assert eng.next_wakeup() == T0 + 5 * D + KEEP


def test_without_a_retention_nothing_is_forgotten() -> None:
    eng = engine(None)
    eng.apply(event("order.paid", T0), T0)
    assert eng.next_wakeup() is None
    assert eng.advance(T0 + 10_000 * D) == []
    assert "o-7" in eng.store


def test_an_open_case_keeps_its_order_and_its_deadline_restarts_the_count() -> None:
    eng = engine(KEEP)
    eng.apply(event("order.paid", T0), T0)
    eng.apply(event("aftersale.requested", T0 + D, kind="refund_only"), T0 + D)
    # The case's deadline (48 h) fires auto_refund and closes it; retention counts from there.
    effects = eng.advance(T0 + 100 * D)
    decided = T0 + D + 48 * H
    assert [type(e) for e in effects] == [Reminder, Reminder, Action, CaseChanged, OrderForgotten]
    assert forgotten(effects) == [OrderForgotten("o-7", decided, decided + KEEP)]
    assert "o-7" not in eng.store


def test_an_escalated_case_with_its_deadline_paused_is_never_forgotten() -> None:
    eng = engine(timedelta(hours=1))
    eng.apply(event("aftersale.requested", T0), T0)
    eng.apply(event("aftersale.escalated", T0 + H), T0 + H)
    assert eng.next_wakeup() is None
    assert eng.advance(T0 + 1000 * D) == []
    state = eng.store["o-7"]
    assert state.open is not None
    assert state.open.phase == "escalated"


def test_a_record_after_the_retention_finds_a_new_order() -> None:
    eng = engine()
    eng.apply(event("aftersale.requested", T0), T0)
    eng.apply(event("aftersale.rejected", T0 + H), T0 + H)
    later = T0 + H + KEEP + D
    # Before the retention ends, the closed case's id cannot be used again ...
    soon = eng.apply(event("aftersale.requested", T0 + 2 * H), T0 + 2 * H)
    assert soon.error is not None
    assert soon.error.code == "case_already_open"
    # ... after it (even before any advance), the order is forgotten first, then the record
    # opens case c-42 on a new order.
    result = eng.apply(event("aftersale.requested", later), later)
    assert result.verdict == "applied"
    assert [type(e) for e in result.effects] == [OrderForgotten, CaseChanged]
    state = eng.store["o-7"]
    assert state.open is not None
    assert state.closed == {}
    assert state.last_at == later
    assert eng.next_wakeup() == later + 24 * H  # the new case's first reminder


def test_a_refused_record_after_the_retention_leaves_nothing_behind() -> None:
    eng = engine()
    eng.apply(event("aftersale.requested", T0), T0)
    eng.apply(event("aftersale.rejected", T0 + H), T0 + H)
    later = T0 + H + KEEP + D
    result = eng.apply(event("aftersale.approved", later), later)
    assert result.error is not None
    assert result.error.code == "unknown_case"  # not invalid_...
    assert [type(e) for e in result.effects] == [OrderForgotten]
    assert "o-7" not in eng.store
    assert eng.next_wakeup() is None


def test_a_retry_after_the_retention_is_applied_again() -> None:
    eng = engine()
    paid = event("order.paid", T0)
    eng.apply(paid, T0)
    assert eng.apply(paid, T0 + D).verdict == "duplicate"
    assert eng.apply(paid, T0 + KEEP + D).verdict == "applied"


def test_forget_upto_bounds_forgetting_in_apply_apart_from_firing() -> None:
    # The worker: an order fact fires nothing (fire_upto EPOCH) but may find its order
    # forgotten; an after-sale record may fire its case's deadline but cannot forget its
    # order while catch-up safety says an unread record could still have kept it.
    late = T0 + KEEP + D
    eng = engine()
    eng.apply(event("order.paid", T0), T0)
    just_before = T0 + KEEP - timedelta(microseconds=1)
    held = eng.apply(event("order.delivered", late), EPOCH, forget_upto=just_before)
    assert held.effects == []
    assert eng.store["o-7"].paid  # applied to the order as it was
    assert eng.advance(late + KEEP - timedelta(microseconds=1)) == []
    assert eng.next_wakeup() == late + KEEP

    eng = engine()
    eng.apply(event("order.paid", T0), T0)
    result = eng.apply(event("order.delivered", late), EPOCH, forget_upto=late)
    assert [type(e) for e in result.effects] == [OrderForgotten]
    assert not eng.store["o-7"].paid  # a new order

    eng = engine()
    eng.apply(event("aftersale.requested", T0, kind="refund_only"), T0)
    # the case's deadline (48 h) fires by the record's time; forgetting is held back
    result = eng.apply(event("aftersale.requested", late, case_id="c-43"), late, EPOCH)
    assert [type(e) for e in result.effects][-3:] == [Action, CaseChanged, CaseChanged]
    state = eng.store["o-7"]
    assert state.closed == {"c-42": "refunded"}  # remembered: not forgotten


def test_an_early_entry_reached_writes_nothing() -> None:
    # In the worker a write is a changelog record: re-indexing alone must not make one.
    outbox = Outbox(0, DictLocalStore())
    eng = Engine(Policy(order_retention=KEEP), store=outbox)
    eng.apply(event("order.paid", T0), T0)
    eng.apply(event("order.delivered", T0 + D), T0 + D)
    outbox.settle(outbox.take())
    assert eng.advance(T0 + KEEP) == []
    assert not outbox.pending
    assert eng.next_wakeup() == T0 + D + KEEP


# --------------------------------------------------------------------------- properties


@PROPS
@given(scenarios(), st.integers(1, 240))
def test_forgetting_is_never_early_and_never_of_an_open_case(
    scenario: Scenario, hours: int
) -> None:
    keep = timedelta(hours=hours)
    run = drive(scenario, policy=replace(scenario.policy, order_retention=keep))
    open_cases: set[str] = set()
    for clock, effect in run.timeline():
        if isinstance(effect, CaseChanged) and effect.closed:  # a merchant's refund: at once
            open_cases.discard(effect.order_id)
        elif isinstance(effect, CaseChanged) and effect.before is None:
            open_cases.add(effect.order_id)
        elif isinstance(effect, OrderForgotten):
            assert clock is not None
            assert effect.at <= clock  # never early
            assert effect.at == effect.last_at + keep
            assert effect.order_id not in open_cases
    # Nothing overdue is left: every order still kept has an open case or time to go.
    if run.end is not None:
        for order_id, state in run.engine.store.items():
            assert state.open is not None or (
                state.last_at is not None and state.last_at + keep > run.end
            ), order_id


@PROPS
@given(scenarios())
def test_a_retention_longer_than_the_input_changes_nothing(scenario: Scenario) -> None:
    plain = drive(scenario)
    kept = drive(scenario, policy=replace(scenario.policy, order_retention=10_000 * D))
    assert [s.verdict for s in kept.steps] == [s.verdict for s in plain.steps]
    assert [s.code for s in kept.steps] == [s.code for s in plain.steps]
    assert list(kept.timeline()) == list(plain.timeline())
