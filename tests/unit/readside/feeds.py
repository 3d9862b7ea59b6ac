"""Status feeds for the read side's tests: the engine driven as replay drives it, with its
status records (`streams/rules/status.py`), and a memory store over a projection."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import orjson
from hypothesis import strategies as st

from streams.contract.events import decode
from streams.errors import InputError
from streams.readside.projection import (
    OrderView,
    Projection,
    StatusRecord,
    WindowCounts,
    decode_record,
)
from streams.readside.redis_store import StoreUnavailable
from streams.rules.engine import Engine
from streams.rules.status import status_records
from tests.unit.strategies import Scenario, scenarios


@dataclasses.dataclass(slots=True)
class Feed:
    """The status records of a run (as JSON-able dicts, in order) and the engine after it."""

    records: list[dict[str, Any]]
    engine: Engine

    def decoded(self) -> list[StatusRecord]:
        return [decode_record(orjson.dumps(r)) for r in self.records]


def run_feed(scenario: Scenario) -> Feed:
    """Replay `scenario` as `aftersale replay --status` does, keeping the engine."""
    engine = Engine(scenario.policy)
    out: list[dict[str, Any]] = []
    clock = None
    for value in scenario.records:
        try:
            event = decode(orjson.dumps(value))
        except InputError:
            continue
        if clock is None or event.occurred_at > clock:
            clock = event.occurred_at
        out += status_records(engine.advance(clock), None)
        out += status_records(engine.apply(event, clock).effects, None)
    end = scenario.until if clock is None or (scenario.until and scenario.until > clock) else clock
    if end is not None:
        out += status_records(engine.advance(end), None)
    return Feed(out, engine)


@st.composite
def feed_scenarios(draw: st.DrawFn) -> Scenario:
    """Random replay inputs; a third of them with an order retention, so that orders are
    forgotten (and sometimes come back as new orders)."""
    scenario = draw(scenarios(max_records=40))
    if draw(st.integers(0, 2)) == 0:
        keep = timedelta(hours=draw(st.integers(1, 72)))
        policy = dataclasses.replace(scenario.policy, order_retention=keep)
        scenario = Scenario(policy, scenario.records, scenario.until)
    return scenario


class MemoryStore:
    """The API's store over a projection in memory (the fake of RedisStore)."""

    def __init__(self, projection: Projection, down: bool = False) -> None:
        self.projection = projection
        self.down = down

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable("ConnectionError: test")

    async def ping(self) -> None:
        self._check()

    async def order(self, order_id: str) -> OrderView | None:
        self._check()
        return self.projection.orders.get(order_id)

    async def case(self, order_id: str, case_id: str) -> OrderView | None:
        self._check()
        return self.projection.orders.get(order_id)

    async def merchant_window(self, merchant_id: str, days: Sequence[str]) -> WindowCounts | None:
        self._check()
        return self.projection.merchant_window(merchant_id, days)

    async def candidates(self, days: Sequence[str], min_paid: int) -> list[WindowCounts]:
        self._check()
        return self.projection.candidates(days, min_paid)
