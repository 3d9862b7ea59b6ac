"""The campaign's verdict (judge.py): lost, duplicated, early, raced or unexplained outputs."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from tests.chaos.judge import (
    AFTERSALE_EVENTS,
    ORDER_EVENTS,
    InputRecord,
    Outputs,
    append_order,
    judge,
)

T0 = datetime(2026, 12, 6, 5, 0, tzinfo=UTC)
DEADLINE = T0 + timedelta(seconds=6)


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def record(
    event_type: str,
    occurred: float,
    appended: float,
    offset: int = 0,
    case_id: str = "c-1",
    **fields: Any,
) -> InputRecord:
    body = {"event_id": f"e-{offset}", "type": event_type, "order_id": "o-1", "case_id": case_id}
    body.update(occurred_at=at(occurred), **fields)
    topic = ORDER_EVENTS if event_type.startswith("order.") else AFTERSALE_EVENTS
    appended_ms = round((T0 + timedelta(seconds=appended)).timestamp() * 1000)
    return InputRecord(topic, 0, offset, appended_ms, orjson.dumps(body))


def action(fired: float = 6.2, deadline: float = 6.0) -> dict[str, Any]:
    return {
        "action_id": "c-1:merchant_review", "type": "auto_approve", "case_id": "c-1",
        "order_id": "o-1", "deadline_at": at(deadline), "fired_at": at(fired),
    }  # fmt: skip


def reminder() -> dict[str, Any]:
    return {
        "notification_id": "c-1:merchant_review:3", "case_id": "c-1", "order_id": "o-1",
        "deadline_at": at(6), "remind_at": at(3),
    }  # fmt: skip


def letter(value: bytes, error: str = "invalid_transition") -> dict[str, Any]:
    return {"error": error, "original_base64": base64.b64encode(value).decode()}


REQUEST = record("aftersale.requested", 0, 0.01, 0)


def test_the_same_outputs_pass() -> None:
    out = Outputs([action()], [reminder()], [])
    verdict = judge([REQUEST], Outputs([action(6)], [reminder()], []), out)
    assert verdict.passed
    assert verdict.lost == verdict.extra == []
    assert verdict.raced == {}


def test_an_approval_written_after_the_deadline_it_was_in_time_for_is_a_race() -> None:
    # stamped before the deadline, appended after it (a broker outage held the producer up):
    # replay says in time (no action), the worker fired the deadline first
    late = record("aftersale.approved", 5.0, 9.0, 1)
    expected = Outputs([], [reminder()], [])
    actual = Outputs([action()], [reminder()], [letter(late.value)])
    verdict = judge([REQUEST, late], expected, actual)
    assert verdict.passed
    assert not verdict.unexplained
    assert len(verdict.raced_differences) == 2  # the extra action and the extra dead letter
    assert list(verdict.raced) == [("o-1", "c-1")]
    assert "aftersale.approved e-1" in verdict.raced[("o-1", "c-1")][0]


def test_an_approval_written_before_the_deadline_is_no_excuse() -> None:
    in_time = record("aftersale.approved", 5.0, 5.01, 1)
    verdict = judge(
        [REQUEST, in_time], Outputs([], [reminder()], []), Outputs([action()], [reminder()], [])
    )
    assert not verdict.passed
    assert [d.what for d in verdict.unexplained] == ["action extra"]


def test_a_lost_action_without_a_race_is_unexplained() -> None:
    verdict = judge(
        [REQUEST], Outputs([action(6)], [reminder()], []), Outputs([], [reminder()], [])
    )
    assert [d.what for d in verdict.unexplained] == ["action lost"]
    assert [d.what for d in verdict.lost] == ["action lost"]


def test_duplicated_and_early_actions_fail_even_in_a_raced_case() -> None:
    late = record("aftersale.approved", 5.0, 9.0, 1)
    actual = Outputs([action(), action(7.0)], [reminder(), reminder()], [])
    verdict = judge([REQUEST, late], Outputs([action(6)], [reminder()], []), actual)
    assert verdict.duplicated == {"c-1:merchant_review": 2, "c-1:merchant_review:3": 2}
    assert not verdict.passed
    early = judge([REQUEST], Outputs([action(6)], [], []), Outputs([action(fired=5.9)], [], []))
    assert early.early == [("c-1:merchant_review", at(6), at(5.9))]
    assert not early.passed


def test_a_dead_letter_written_twice_is_duplicated() -> None:
    bad = record("aftersale.approved", 7.0, 7.01, 1)  # late: refused in both
    expected = Outputs([action(6)], [reminder()], [letter(bad.value)])
    actual = Outputs([action()], [reminder()], [letter(bad.value), letter(bad.value)])
    verdict = judge([REQUEST, bad], expected, actual)
    assert list(verdict.duplicated.values()) == [2]
    assert not verdict.passed
    # refused where replay applied it: an extra dead letter, unexplained without a race
    extra = judge([REQUEST, bad], Outputs([action(6)], [reminder()], []), actual)
    assert [d.what for d in extra.unexplained] == ["dead letter extra"] * 2


def test_a_reminder_with_another_deadline_differs() -> None:
    moved = dict(reminder(), deadline_at=at(7))
    verdict = judge([REQUEST], Outputs([], [reminder()], []), Outputs([], [moved], []))
    assert [d.what for d in verdict.unexplained] == ["reminder differs"]


def test_append_order_is_by_append_time_then_order_events_first() -> None:
    a = InputRecord(AFTERSALE_EVENTS, 1, 5, 1000, b"a")
    b = InputRecord(ORDER_EVENTS, 2, 9, 1000, b"b")
    c = InputRecord(AFTERSALE_EVENTS, 0, 7, 999, b"c")
    d = InputRecord(AFTERSALE_EVENTS, 0, 3, 1000, b"d")
    assert [r.value for r in append_order([a, b, c, d])] == [b"c", b"b", b"d", b"a"]


def test_a_record_written_after_a_reminder_instant_races_with_the_reminder() -> None:
    # stamped before the reminder (remind_at 3 s), written after it but before the deadline:
    # the reminder may or may not go out; the deadline may not fire
    withdrawn = record("aftersale.withdrawn", 2.0, 4.0, 1)
    verdict = judge([REQUEST, withdrawn], Outputs([], [reminder()], []), Outputs([], [], []))
    assert verdict.passed
    assert [d.what for d in verdict.raced_differences] == ["reminder lost"]
    assert verdict.raced[("o-1", "c-1")][0].startswith("reminder ")
    # ... but not with the deadline's action
    fired = judge([REQUEST, withdrawn], Outputs([], [reminder()], []), Outputs([action()], [], []))
    assert [d.what for d in fired.unexplained] == ["action extra"]


def test_a_race_of_a_case_explains_the_orders_later_case() -> None:
    # c-1's approval, stamped in time, written after its deadline: replay (append order) says
    # late, so c-1 was auto-approved and still open when c-2 was requested: case_already_open;
    # the worker judged the approval in time... and c-2 opened
    late = record("aftersale.rejected", 5.0, 9.0, 1)
    second = record("aftersale.requested", 10.0, 10.01, 2, case_id="c-2")
    expected = Outputs(
        [action(6)], [reminder()], [letter(late.value), letter(second.value, "case_already_open")]
    )
    c2 = dict(action(16.2, 16.0), action_id="c-2:merchant_review", case_id="c-2")
    actual = Outputs([c2], [reminder()], [])
    verdict = judge([REQUEST, late, second], expected, actual)
    assert verdict.unexplained == []
    assert set(verdict.raced) == {("o-1", "c-1"), ("o-1", "c-2")}
    assert verdict.raced[("o-1", "c-2")][0].startswith("(earlier case c-1) deadline")


def test_a_race_explains_a_later_case_written_in_the_same_batch() -> None:
    # The campaign's case: after a broker restart the producer sent the request, the late
    # rejection and the next case's request in one batch: one append time. The later case is
    # later by offset.
    request = record("aftersale.requested", 0, 9.0, 0)
    late = record("aftersale.rejected", 5.0, 9.0, 1)
    second = record("aftersale.requested", 8.0, 9.0, 2, case_id="c-2")
    expected = Outputs(
        [action(6)], [reminder()], [letter(late.value), letter(second.value, "case_already_open")]
    )
    verdict = judge([request, late, second], expected, Outputs([], [], []))
    assert verdict.unexplained == []
    assert verdict.raced[("o-1", "c-2")][0].startswith("(earlier case c-1) deadline")
