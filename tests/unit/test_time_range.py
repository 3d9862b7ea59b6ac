"""Every instant the engine computes stays within datetime's range (years 1-9999): input times
and policy durations are bounded so that no record, however stamped, can crash it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from streams.effects import Action, OrderForgotten
from streams.engine import Engine
from streams.errors import PolicyError, SchemaViolation
from streams.events import Event, decode, decode_checked
from streams.policy import Policy, load_policy
from streams.times import LATEST_DUE, LATEST_OCCURRED_AT, LONGEST
from tests.unit.factories import body, event

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
    assert [type(e).__name__ for e in fired if not isinstance(e, Action)] == []
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
