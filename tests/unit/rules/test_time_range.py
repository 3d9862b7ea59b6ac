"""Every instant the engine computes stays within datetime's range (years 1-9999): input times
and policy durations are bounded so that no record, however stamped, can crash it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.contract.events import Event, decode, decode_checked
from streams.contract.times import LATEST_DUE, LATEST_OCCURRED_AT, LONGEST, format_time
from streams.errors import PolicyError, SchemaViolation
from streams.rules.effects import Action, OrderForgotten
from streams.rules.engine import Engine
from streams.rules.policy import RULES, Policy, load_policy
from tests.unit.factories import T0, body, event
from tests.unit.rules.test_properties import PROPS, drive
from tests.unit.strategies import ALL_TYPES, Scenario, _fields

LAST_OK = LATEST_OCCURRED_AT - timedelta(microseconds=1)
END = datetime.max.replace(tzinfo=UTC)
YEAR_1 = datetime.min.replace(tzinfo=UTC)


@pytest.mark.parametrize("decoder", [decode, decode_checked])
@pytest.mark.parametrize(
    "occurred_at", ["9000-01-01T00:00:00Z", "9000-01-01T01:00:00+01:00", "9999-12-31T23:59:59Z"]
)
def test_an_event_at_or_after_the_latest_instant_is_a_schema_violation(
    decoder: Callable[[bytes], Event], occurred_at: str
) -> None:
    value = orjson.dumps(body("aftersale.requested", occurred_at=occurred_at))
    with pytest.raises(SchemaViolation, match=r"occurred_at.*9000-01-01T00:00:00Z"):
        decoder(value)


@pytest.mark.parametrize("decoder", [decode, decode_checked])
def test_an_event_just_before_the_latest_instant_is_accepted(
    decoder: Callable[[bytes], Event],
) -> None:
    value = orjson.dumps(body("aftersale.requested", LAST_OK))
    assert decoder(value).occurred_at == LAST_OK


@pytest.mark.parametrize("key", ["deadlines: {merchant_review: ", "order_retention: "])
def test_policy_durations_are_at_most_the_longest(tmp_path: Path, key: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(f"{key}P{LONGEST.days}D{'}' if '{' in key else ''}\n")
    load_policy(path)
    path.write_text(f"{key}P{LONGEST.days + 1}D{'}' if '{' in key else ''}\n")
    with pytest.raises(PolicyError, match=f"at most {LONGEST.days} days"):
        load_policy(path)


def test_the_longest_chain_from_the_latest_instant_stays_in_range() -> None:
    # every duration at its longest: review -> auto_approve -> buyer_return -> auto_close,
    # then the retention, all counted from the last accepted instant
    policy = Policy(
        deadlines={
            "merchant_review": LONGEST,
            "buyer_return": LONGEST,
            "merchant_receipt": LONGEST,
        },
        no_reason_window=LONGEST,
        reminders={"merchant_review": (LONGEST,), "buyer_return": (), "merchant_receipt": ()},
        order_retention=LONGEST,
    )
    eng = Engine(policy)
    eng.apply(event("order.paid", LAST_OK), LAST_OK)
    assert eng.apply(event("aftersale.requested", LAST_OK), LAST_OK).error is None
    fired = eng.advance(END)
    actions = [e.type for e in fired if isinstance(e, Action)]
    assert actions == ["auto_approve", "auto_close"]
    assert [type(e) for e in fired if isinstance(e, OrderForgotten)] == [OrderForgotten]
    assert eng.next_wakeup() is None


def test_a_reminder_longer_than_its_deadline_at_year_1_is_skipped() -> None:
    policy = Policy(reminders={"merchant_review": (timedelta(days=3),), "buyer_return": (),
                               "merchant_receipt": ()})  # fmt: skip
    eng = Engine(policy)
    assert eng.apply(event("aftersale.requested", YEAR_1), YEAR_1).error is None
    fired = eng.advance(YEAR_1 + timedelta(days=2))
    assert [type(e).__name__ for e in fired if not isinstance(e, Action)] == ["CaseChanged"]
    assert [e.type for e in fired if isinstance(e, Action)] == ["auto_approve"]


def test_resuming_a_deadline_past_the_latest_due_is_refused_and_changes_nothing() -> None:
    eng = Engine(Policy())
    eng.apply(event("aftersale.requested", LAST_OK), LAST_OK)
    # an escalation stamped in year 1 leaves almost 9,000 years on the review deadline
    assert eng.apply(event("aftersale.escalated", YEAR_1), YEAR_1).error is None
    result = eng.apply(event("aftersale.resolved", LAST_OK), LAST_OK)
    assert isinstance(result.error, SchemaViolation)
    assert str(LATEST_DUE.year) in str(result.error)
    case = eng.store["o-7"].open
    assert case is not None
    assert case.phase == "escalated"
    assert eng.advance(END) == []  # paused: nothing due, nothing overflows


H = timedelta(hours=1)
#: Instants at both ends of what input may carry, and anything between.
EXTREMES = st.one_of(
    st.sampled_from([YEAR_1, YEAR_1 + H, LAST_OK - H, LAST_OK, T0]),
    st.datetimes(YEAR_1.replace(tzinfo=None), LAST_OK.replace(tzinfo=None), timezones=st.just(UTC)),
)
DURATIONS = st.sampled_from([timedelta(seconds=1), H, timedelta(days=10), LONGEST])
#: Weighted toward what starts, pauses and resumes deadlines.
KINDS = st.sampled_from(
    (*ALL_TYPES, *("aftersale.requested", "aftersale.escalated", "aftersale.resolved") * 4)
)


@st.composite
def extreme_inputs(draw: st.DrawFn) -> Scenario:
    def offsets() -> tuple[timedelta, ...]:
        return tuple(sorted(set(draw(st.lists(DURATIONS, max_size=2))), reverse=True))

    policy = Policy(
        deadlines={rule: draw(DURATIONS) for rule in RULES},
        no_reason_window=draw(DURATIONS),
        reminders={rule: offsets() for rule in RULES},
        order_retention=draw(st.one_of(st.none(), DURATIONS)),
    )
    records = []
    for n in range(draw(st.integers(1, 12))):
        kind = draw(KINDS)
        record = {
            "event_id": f"e-{n}",
            "type": kind,
            "order_id": "o-1",
            "occurred_at": format_time(draw(EXTREMES)),
            **_fields(draw, kind, 1),
        }
        if kind.startswith("aftersale."):
            record["case_id"] = draw(st.sampled_from(("c-1", "c-1", "c-1", "c-2")))
        records.append(record)
    return Scenario(policy, records, END)


@settings(PROPS, max_examples=500)
@given(extreme_inputs())
def test_no_accepted_input_under_any_valid_policy_makes_the_engine_leave_the_range(
    scenario: Scenario,
) -> None:
    # Any exception here (OverflowError above all) would crash replay, and the worker on
    # every restart: every record must end applied, refused or as a dead letter. Replay's
    # clock, then the end of time.
    run = drive(scenario)
    assert all(step.verdict != "invalid" for step in run.steps)  # all within the bounds
    assert run.engine.next_wakeup() is None  # everything due by the end of time has fired
