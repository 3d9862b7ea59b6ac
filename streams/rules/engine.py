"""The deadline engine: per-order state, a due index, and the two ways time moves.

    engine.apply(event, fire_upto)  -> Result   # fire this order's due items, then apply
    engine.advance(now)             -> effects  # fire every due item, in time order
    engine.next_wakeup()            -> datetime | None

The caller owns the clock and decides `fire_upto`/`now`: replay passes its simulated clock,
the streaming worker passes what the wall clock and catch-up safety allow. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping
from datetime import datetime
from typing import Literal, NamedTuple

from streams.contract.events import Event
from streams.errors import InputError
from streams.rules.effects import Effect, OrderForgotten
from streams.rules.orders import OrderState
from streams.rules.policy import Policy
from streams.rules.timers import TimerWheel

#: What became of one event: applied, a duplicate of one applied before, or refused.
Verdict = Literal["applied", "duplicate", "rejected"]


class Result(NamedTuple):
    """What applying one event did: its verdict, the error if refused, and all effects.

    A NamedTuple built by tuple.__new__ in `apply`: one is made per record.
    """

    verdict: Verdict
    effects: list[Effect]
    error: InputError | None = None


_new_result = tuple.__new__


class Engine:
    """Drives OrderState over a store (a dict, or a faust table adapter) and a TimerWheel."""

    def __init__(
        self,
        policy: Policy,
        store: MutableMapping[str, OrderState] | None = None,
        wheel: TimerWheel | None = None,
    ) -> None:
        self.policy = policy
        self.store: MutableMapping[str, OrderState] = {} if store is None else store
        self.wheel = TimerWheel() if wheel is None else wheel

    def apply(
        self, event: Event, fire_upto: datetime, forget_upto: datetime | None = None
    ) -> Result:
        """Fire the order's reminders and deadlines due at or before `fire_upto`, then apply.

        An order whose retention ended by `forget_upto` (default: `fire_upto`) is forgotten
        first: the event finds a new order. (The worker bounds forgetting by catch-up safety
        alone: an unread record could still have kept the order.)
        """
        order_id, policy = event.order_id, self.policy
        state = self.store.get(order_id)
        effects: list[Effect] = []
        # `scheduled` is what the wheel holds for this order, so an unchanged due time
        # (most order facts) costs no rescheduling. Only an open case, or an order kept for
        # a retention, has a due time.
        scheduled: datetime | None = None
        forgotten = False
        keep = policy.order_retention
        if state is None:
            state = OrderState(order_id)
        elif state.open is not None or keep is not None:
            scheduled = state.next_due(policy)
            if scheduled is not None and (
                scheduled <= fire_upto or (forget_upto is not None and scheduled <= forget_upto)
            ):
                while fired := state.fire_next(fire_upto, policy, forget_upto):
                    effects += fired
                    if type(fired[-1]) is OrderForgotten:
                        state, forgotten = OrderState(order_id), True
                        break
        event_id = event.event_id
        error: InputError | None = None
        if event_id in state.event_ids:
            verdict: Verdict = "duplicate"
        else:
            try:
                applied = state.apply(event, policy)
            except InputError as refused:
                # Drop the traceback: it would tie this frame into a reference cycle.
                verdict, error = "rejected", refused.with_traceback(None)
            else:
                verdict = "applied"
                state.event_ids.add(event_id)
                state.seen(event.occurred_at)
                if applied:
                    effects += applied
        due: datetime | None = None
        if forgotten and verdict != "applied":
            # forgotten, and the record that came after it was refused: nothing is left
            del self.store[order_id]
        else:
            if effects or verdict == "applied":
                # a refused or duplicate record changes nothing: no write (a table write is a
                # changelog record in the worker)
                self.store[order_id] = state
            if state.open is not None or keep is not None:
                due = state.next_due(policy)
                if (
                    state.open is None
                    and scheduled is not None
                    and due is not None
                    and due > scheduled
                    and not forgotten
                ):
                    # Only the order's expiry moved, later: its earlier entry stays in the
                    # wheel and re-indexes it when reached (one reschedule per retention
                    # rather than one per record of a busy order).
                    due = scheduled
        if due != scheduled:
            self.wheel.schedule(order_id, due)
        result: Result = _new_result(Result, (verdict, effects, error))
        return result

    def advance(self, now: datetime, limit: int | None = None) -> list[Effect]:
        """Fire every reminder and deadline due at or before `now`, earliest first; forget
        every order whose retention ended by then. With `limit`, take at most that many due
        entries (the rest stay due: the next call goes on where this one stopped)."""
        if now < self.wheel.floor:  # nothing can be due yet: the common case, kept cheap
            return []
        effects: list[Effect] = []
        for _, _, fired in self.fire_due(now, limit):
            effects += fired
        return effects

    def fire_due(
        self, now: datetime, limit: int | None = None
    ) -> Iterator[tuple[str, datetime, list[Effect]]]:
        """`advance`, one due entry at a time, in (due time, order id) order: the order id, the
        due time, and what firing it did (often nothing: an entry earlier than its order's
        due time)."""
        wheel, store, policy = self.wheel, self.store, self.policy
        left = -1 if limit is None else limit
        while left != 0 and (item := wheel.pop_next(now)) is not None:
            left -= 1
            order_id, when = item
            state = store.get(order_id)
            if state is None:
                continue
            fired = state.fire_next(when, policy)
            if fired:
                if type(fired[-1]) is OrderForgotten:
                    del store[order_id]
                    yield order_id, when, fired
                    continue
                store[order_id] = state
            # (nothing fired: an entry earlier than the order's due time; no write)
            wheel.schedule(order_id, state.next_due(policy))
            yield order_id, when, fired

    def next_wakeup(self) -> datetime | None:
        """When `advance` next has something to do."""
        return self.wheel.peek()

    def rebuild(self, order_ids: Iterable[str] | None = None) -> int:
        """Re-index due times from the store (after recovery); returns how many are scheduled."""
        for order_id in self.store if order_ids is None else order_ids:
            state = self.store.get(order_id)
            if state is not None:
                self.wheel.schedule(order_id, state.next_due(self.policy))
        return len(self.wheel)
