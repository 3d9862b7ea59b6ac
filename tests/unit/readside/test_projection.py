"""The read side's projection: status records applied to order views and merchant counts."""

from __future__ import annotations

import copy
import itertools
from collections import Counter
from datetime import date, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.contract.times import format_time
from streams.errors import ContractError
from streams.readside.projection import (
    HISTORY_LIMIT,
    PAID,
    REFUNDED,
    CaseRecord,
    Delivered,
    OrderView,
    Projection,
    StatusRecord,
    WindowCounts,
    decode_record,
    needed_fields,
    plan_batch,
    rank,
    window_days,
)
from tests.unit.readside.feeds import Feed, feed_scenarios, run_feed
from tests.unit.strategies import Scenario

PROPS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def paid(order_id: str = "o-1", at: str = "2026-11-01T10:00:00Z", merchant: str = "m-1") -> Any:
    return {"type": "order_paid", "order_id": order_id, "merchant_id": merchant, "at": at,
            "amount": 5990}  # fmt: skip


def case(what: str, at: str, phase: str, order_id: str = "o-1", **fields: Any) -> Any:
    body = {
        "type": "case", "order_id": order_id, "merchant_id": "m-1", "case_id": "c-1",
        "kind": "return_refund", "reason": "quality", "amount": 5990, "currency": "CNY",
        "what": what, "at": at, "phase": phase, "rule": None, "deadline_at": None,
        "paused": False, "remaining_s": None, "outcome": None, "refund_cause": None,
        "first_refund": False, "fired_at": None,
    }  # fmt: skip
    body.update(fields)
    return body


def records(*bodies: dict[str, Any]) -> list[StatusRecord]:
    return [decode_record(orjson.dumps(b)) for b in bodies]


# --------------------------------------------------------------------------- examples


def test_a_case_through_escalation_keeps_its_paused_rule_and_history() -> None:
    projection = Projection().apply_all(
        records(
            paid(),
            case(
                "aftersale.requested",
                "2026-11-02T10:00:00Z",
                "review",
                rule="merchant_review",
                deadline_at="2026-11-04T10:00:00Z",
            ),
            case(
                "aftersale.escalated",
                "2026-11-03T10:00:00Z",
                "escalated",
                paused=True,
                remaining_s=86400.0,
            ),
            case(
                "aftersale.resolved",
                "2026-11-03T12:00:00Z",
                "review",
                rule="merchant_review",
                deadline_at="2026-11-04T12:00:00Z",
            ),
            case(
                "auto_approve",
                "2026-11-04T12:00:00Z",
                "awaiting_return",
                rule="buyer_return",
                deadline_at="2026-11-14T12:00:00Z",
                fired_at="2026-11-04T12:00:00.250Z",
            ),
        )
    )
    order = projection.orders["o-1"].document()
    assert order["paid"] is True
    assert order["paid_at"] == "2026-11-01T10:00:00Z"
    assert order["refunded"] is False
    [c] = order["cases"]
    assert c["phase"] == "awaiting_return"
    assert c["opened_at"] == "2026-11-02T10:00:00Z"
    assert c["deadline"] == {
        "rule": "buyer_return", "deadline_at": "2026-11-14T12:00:00Z", "paused": False,
        "remaining_s": None,
    }  # fmt: skip
    assert [(h["what"], h["phase"]) for h in c["history"]] == [
        ("aftersale.requested", "review"),
        ("aftersale.escalated", "escalated"),
        ("aftersale.resolved", "review"),
        ("auto_approve", "awaiting_return"),
    ]
    assert c["history"][-1]["fired_at"] == "2026-11-04T12:00:00.250Z"

    paused = Projection().apply_all(
        records(
            case(
                "aftersale.requested",
                "2026-11-02T10:00:00Z",
                "review",
                rule="merchant_review",
                deadline_at="2026-11-04T10:00:00Z",
            ),
            case(
                "aftersale.escalated",
                "2026-11-03T10:00:00Z",
                "escalated",
                paused=True,
                remaining_s=86400.0,
            ),
        )
    )
    assert paused.orders["o-1"].cases["c-1"]["deadline"] == {
        "rule": "merchant_review", "deadline_at": None, "paused": True, "remaining_s": 86400.0,
    }  # fmt: skip
    # an order seen only through its case takes the case's merchant, and is not paid
    assert paused.orders["o-1"].meta == {
        "order_id": "o-1", "merchant_id": "m-1", "paid": False, "paid_at": None,
        "amount": None, "refunded": False, "case_ids": ["c-1"],
    }  # fmt: skip


def test_refunds_count_orders_once_on_their_day_and_forgetting_keeps_the_counts() -> None:
    projection = Projection().apply_all(
        records(
            paid("o-1", "2026-11-01T23:59:59.999Z"),
            paid("o-2", "2026-11-02T00:00:00Z"),
            case(
                "aftersale.refunded",
                "2026-11-03T10:00:00Z",
                "closed",
                outcome="refunded",
                refund_cause="merchant",
                first_refund=True,
            ),
            case(
                "aftersale.refunded",
                "2026-11-04T10:00:00Z",
                "closed",
                case_id="c-2",
                outcome="refunded",
                refund_cause="merchant",
                first_refund=False,
            ),
            {"type": "order_forgotten", "order_id": "o-1", "at": "2026-12-01T00:00:00Z"},
        )
    )
    assert set(projection.orders) == {"o-2"}
    assert projection.counts[PAID] == {"m-1": {"2026-11-01": 1, "2026-11-02": 1}}
    assert projection.counts[REFUNDED] == {"m-1": {"2026-11-03": 1}}
    days = window_days(date(2026, 11, 3), 2)
    assert days == ["2026-11-02", "2026-11-03"]
    assert projection.merchant_window("m-1", days) == WindowCounts("m-1", 1, 1)
    assert projection.merchant_window("m-1", days[:1]) == WindowCounts("m-1", 1, 0)
    assert projection.merchant_window("m-9", days) is None
    # a forgotten order that comes back is a new order
    projection.apply_all(records(case("aftersale.requested", "2026-12-02T00:00:00Z", "review")))
    assert projection.orders["o-1"].meta is not None
    assert projection.orders["o-1"].meta["paid"] is False
    assert list(projection.orders["o-1"].cases) == ["c-1"]


def test_history_keeps_the_last_entries() -> None:
    bodies = [case("aftersale.requested", "2026-11-02T10:00:00Z", "review")]
    for n in range(HISTORY_LIMIT + 5):
        what = "aftersale.escalated" if n % 2 == 0 else "aftersale.resolved"
        bodies.append(case(what, f"2026-11-02T11:{n // 60:02d}:{n % 60:02d}Z", "review"))
    view = Projection().apply_all(records(*bodies)).orders["o-1"]
    history = view.cases["c-1"]["history"]
    assert len(history) == HISTORY_LIMIT
    assert view.cases["c-1"]["history_dropped"] == 6
    assert history[-1]["at"] == f"2026-11-02T11:01:{(HISTORY_LIMIT + 4) % 60:02d}Z"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{", "truncated"),
        (b'{"type": "order_shipped", "order_id": "o"}', "Invalid value 'order_shipped'"),
        (b'{"type": "order_forgotten", "order_id": "o"}', "missing required field `at`"),
        (b'{"type": "order_forgotten", "order_id": "o", "at": "2026-11-01"}', "matching regex"),
        (b'{"type": "order_forgotten", "order_id": "", "at": "2026-11-01T00:00:00Z"}', "length"),
    ],
)
def test_a_record_that_is_not_a_status_record_is_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(ContractError, match="not a status record") as refused:
        decode_record(raw)
    assert reason.lower() in str(refused.value).lower()


def test_extra_fields_are_ignored() -> None:
    body = {**paid(), "new_field": 1}
    [record] = records(body)
    assert record.order_id == "o-1"


# --------------------------------------------------------------------------- properties


def _check_against_engine(feed: Feed, projection: Projection) -> None:
    """The projection of a run's feed says what the engine's final state says."""
    shown = set()
    for order_id, state in feed.engine.store.items():
        if not (state.paid or state.open or state.closed):
            continue
        shown.add(order_id)
        view = projection.orders[order_id]
        assert view.meta is not None
        assert view.meta["paid"] is state.paid
        assert view.meta["refunded"] is state.refunded
        open_ids = set() if state.open is None else {state.open.case_id}
        assert set(view.cases) == set(state.closed) | open_ids
        assert set(view.meta["case_ids"]) == set(view.cases)
        for case_id, outcome in state.closed.items():
            doc = view.cases[case_id]
            assert (doc["phase"], doc["outcome"], doc["deadline"]) == ("closed", outcome, None)
        if state.open is not None:
            c, doc = state.open, view.cases[state.open.case_id]
            assert doc["phase"] == c.phase
            assert doc["outcome"] is None
            if c.due_at is not None:
                assert doc["deadline"] == {
                    "rule": c.rule, "deadline_at": format_time(c.due_at), "paused": False,
                    "remaining_s": None,
                }  # fmt: skip
            elif c.remaining is not None:
                assert doc["deadline"] == {
                    "rule": c.rule, "deadline_at": None, "paused": True,
                    "remaining_s": c.remaining.total_seconds(),
                }  # fmt: skip
            else:
                assert doc["deadline"] is None
    assert set(projection.orders) == shown


@PROPS
@given(feed_scenarios())
def test_the_projection_of_a_replay_says_what_the_engine_holds(scenario: Scenario) -> None:
    feed = run_feed(scenario)
    projection = Projection().apply_all(feed.decoded())
    _check_against_engine(feed, projection)
    # the counts are replay's summary: each order_paid, each first refund
    paid_total = sum(sum(d.values()) for d in projection.counts[PAID].values())
    refunded_total = sum(sum(d.values()) for d in projection.counts[REFUNDED].values())
    assert paid_total == sum(1 for r in feed.records if r["type"] == "order_paid")
    assert refunded_total == sum(1 for r in feed.records if r.get("first_refund"))


def _partition(order_id: str, partitions: int) -> int:
    return sum(order_id.encode()) % partitions


def _deliveries(decoded: list[StatusRecord], partitions: int) -> list[Delivered]:
    """Records placed by order on `partitions`, with per-partition offsets (in feed order)."""
    next_offset: Counter[int] = Counter()
    out = []
    for record in decoded:
        p = _partition(record.order_id, partitions)
        out.append(Delivered(p, next_offset[p], record))
        next_offset[p] += 1
    return out


@PROPS
@given(feed_scenarios(), st.integers(1, 3), st.data())
def test_redelivered_records_are_applied_once(
    scenario: Scenario, partitions: int, data: st.DataObject
) -> None:
    deliveries = _deliveries(run_feed(scenario).decoded(), partitions)
    once = Projection()
    for d in deliveries:
        assert d.record is not None
        assert once.apply(d.record, d.partition, d.offset)
    # a consumer that crashes and restarts from an earlier position, over and over
    again, position = Projection(), 0
    while position < len(deliveries):
        upto = data.draw(st.integers(position + 1, len(deliveries)), label="read up to")
        for d in deliveries[position:upto]:
            assert d.record is not None
            again.apply(d.record, d.partition, d.offset)
        position = data.draw(st.integers(0, upto), label="restart at")
        if upto == len(deliveries):
            break
    assert again.snapshot() == once.snapshot()


@PROPS
@given(feed_scenarios(), st.data())
def test_batches_planned_over_stored_views_give_the_sequential_projection(
    scenario: Scenario, data: st.DataObject
) -> None:
    # what the Redis adapter does: per batch, load the fields it names, plan, write back
    decoded = run_feed(scenario).decoded()
    deliveries = _deliveries(decoded, 2)
    expected = Projection().apply_all(decoded).snapshot()
    stored: dict[str, dict[str, Any]] = {}  # order_id -> hash fields (meta, case:<id>)
    counts: Counter[tuple[str, str, str]] = Counter()
    offsets: dict[int, int] = {}
    position = 0
    while position < len(deliveries):
        size = data.draw(st.integers(1, 8), label="batch size")
        batch = deliveries[position : position + size]
        position += size
        loaded = {}
        for order_id, fields in needed_fields(batch).items():
            row = stored.get(order_id, {})
            meta = copy.deepcopy(row.get("meta"))
            view = OrderView(order_id, meta)
            assert fields[0] == "meta"
            for name in fields[1:]:
                if name in row.get("cases", {}):
                    view.cases[name] = copy.deepcopy(row["cases"][name])
            loaded[order_id] = view
        plan = plan_batch(batch, loaded)
        for order_id, view in plan.views.items():
            if view.cleared:
                stored.pop(order_id, None)
            if view.meta is None or not view.touched:
                continue
            row = stored.setdefault(order_id, {"meta": None, "cases": {}})
            for name in view.touched:
                if name == "meta":
                    row["meta"] = copy.deepcopy(view.meta)
                else:
                    row["cases"][name] = copy.deepcopy(view.cases[name])
        for count, n in plan.counts.items():
            counts[(count.kind, count.merchant_id, count.day)] += n
        offsets.update(plan.offsets)
    assert stored == expected.orders
    flat = Counter(
        {
            (kind, merchant, day): n
            for kind, merchants in expected.counts.items()
            for merchant, days in merchants.items()
            for day, n in days.items()
        }
    )
    assert counts == flat
    assert offsets == {p: max(d.offset for d in deliveries if d.partition == p)
                       for p in {d.partition for d in deliveries}}  # fmt: skip


def test_case_records_decode_every_field() -> None:
    [record] = records(case("aftersale.escalated", "2026-11-02T10:00:00Z", "escalated",
                            paused=True, remaining_s=3600))  # fmt: skip
    assert isinstance(record, CaseRecord)
    assert record.remaining_s == 3600.0


# --------------------------------------------------------------------------- refund rates


def test_window_days_end_with_the_given_day() -> None:
    assert window_days(date(2026, 3, 1), 3) == ["2026-02-27", "2026-02-28", "2026-03-01"]
    assert window_days(date(2026, 3, 1), 1) == ["2026-03-01"]
    with pytest.raises(OverflowError):
        window_days(date(1, 1, 2), 3)
    with pytest.raises(ValueError, match="at least one day"):
        window_days(date(2026, 3, 1), 0)


def test_rates_and_ranking() -> None:
    assert WindowCounts("m", 0, 0).refund_rate is None
    assert WindowCounts("m", 0, 2).refund_rate is None
    assert WindowCounts("m", 4, 1).refund_rate == 0.25
    candidates = [
        WindowCounts("m-a", 20, 2),  # 0.1
        WindowCounts("m-b", 40, 4),  # 0.1, more paid: first of the two
        WindowCounts("m-c", 19, 19),  # too few paid orders
        WindowCounts("m-d", 30, 9),  # 0.3
        WindowCounts("m-e", 20, 2),  # 0.1, same as m-a: by id
        WindowCounts("m-f", 25, 0),
    ]
    ranked = rank(candidates, 20, 10)
    assert [c.merchant_id for c in ranked] == ["m-d", "m-b", "m-a", "m-e", "m-f"]
    assert [c.merchant_id for c in rank(candidates, 20, 2)] == ["m-d", "m-b"]
    with pytest.raises(ValueError, match="min_paid"):
        rank(candidates, 0, 1)


_DAYS = [f"2026-11-{d:02d}" for d in range(1, 11)]


@PROPS
@given(
    st.dictionaries(
        st.sampled_from(["m-1", "m-2", "m-3", "m-4"]),
        st.tuples(
            st.dictionaries(st.sampled_from(_DAYS), st.integers(0, 30)),
            st.dictionaries(st.sampled_from(_DAYS), st.integers(0, 10)),
        ),
    ),
    st.integers(1, 10),
    st.integers(1, 10),
    st.integers(1, 40),
    st.integers(1, 5),
)
def test_window_counts_and_ranking_match_a_brute_force(
    merchants: dict[str, tuple[dict[str, int], dict[str, int]]],
    end: int,
    length: int,
    min_paid: int,
    limit: int,
) -> None:
    projection = Projection()
    for merchant, (paid_days, refunded_days) in merchants.items():
        projection.counts[PAID][merchant] = dict(paid_days)
        projection.counts[REFUNDED][merchant] = dict(refunded_days)
    days = window_days(date(2026, 11, end), length)
    last = date(2026, 11, end)
    first = last - timedelta(days=length - 1)
    in_window = {d for d in _DAYS if first <= date.fromisoformat(d) <= last}
    brute = {}
    for merchant, (paid_days, refunded_days) in merchants.items():
        p = sum(n for d, n in paid_days.items() if d in in_window)
        r = sum(n for d, n in refunded_days.items() if d in in_window)
        brute[merchant] = (p, r)
        assert projection.merchant_window(merchant, days) == WindowCounts(merchant, p, r)
    candidates = projection.candidates(days, min_paid)
    assert {c.merchant_id for c in candidates} == {
        m for m, (p, _) in brute.items() if p >= min_paid
    }
    ranked = rank(candidates, min_paid, limit)
    assert len(ranked) == min(limit, len(candidates))
    for better, worse in itertools.pairwise(ranked):
        # rate descending, compared without rounding: r1/p1 >= r2/p2
        assert (
            better.refunded_orders * worse.paid_orders >= worse.refunded_orders * better.paid_orders
        )
    if ranked and len(candidates) > limit:
        worst = ranked[-1]
        for c in candidates:
            if c not in ranked:
                assert (
                    c.refunded_orders * worst.paid_orders <= worst.refunded_orders * c.paid_orders
                )
