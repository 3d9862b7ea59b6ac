"""The clocks: the wall clock is aware UTC; the fake one moves only forward, by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from streams.rules.clock import Clock, FakeClock, SystemClock

T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
CHINA = timezone(timedelta(hours=8))


def test_system_clock_is_aware_utc() -> None:
    before = datetime.now(UTC)
    now = SystemClock().now()
    after = datetime.now(UTC)
    assert now.tzinfo is UTC
    assert before <= now <= after


def test_fake_clock_starts_where_told_and_stays() -> None:
    clock = FakeClock(T0)
    assert clock.now() == T0
    assert clock.now() == T0


def test_fake_clock_converts_its_start_to_utc() -> None:
    clock = FakeClock(datetime(2026, 11, 1, 18, tzinfo=CHINA))
    assert clock.now() == T0
    assert clock.now().tzinfo is UTC


def test_fake_clock_refuses_a_naive_start() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        FakeClock(datetime(2026, 11, 1, 10))  # noqa: DTZ001 - the point of the test


def test_advance() -> None:
    clock = FakeClock(T0)
    assert clock.advance(timedelta(hours=48)) == T0 + timedelta(hours=48)
    assert clock.now() == T0 + timedelta(hours=48)
    assert clock.advance(timedelta(0)) == T0 + timedelta(hours=48)
    assert clock.advance(timedelta(microseconds=1)) == T0 + timedelta(hours=48, microseconds=1)


def test_advance_refuses_going_back() -> None:
    clock = FakeClock(T0)
    with pytest.raises(ValueError, match="never goes back"):
        clock.advance(timedelta(microseconds=-1))
    assert clock.now() == T0


def test_set() -> None:
    clock = FakeClock(T0)
    assert clock.set(T0 + timedelta(days=10)) == T0 + timedelta(days=10)
    assert clock.now() == T0 + timedelta(days=10)
    assert clock.set(T0 + timedelta(days=10)) == T0 + timedelta(days=10)  # standing still is fine


def test_set_converts_to_utc() -> None:
    clock = FakeClock(T0)
    later = datetime(2026, 11, 2, 8, tzinfo=CHINA)
    assert clock.set(later) == T0 + timedelta(hours=14)
    assert clock.now().tzinfo is UTC


def test_set_refuses_going_back() -> None:
    clock = FakeClock(T0)
    clock.advance(timedelta(hours=1))
    with pytest.raises(ValueError, match="never goes back"):
        clock.set(T0)
    with pytest.raises(ValueError, match="never goes back"):
        clock.set(datetime(2026, 11, 1, 18, 59, tzinfo=CHINA))  # 10:59 UTC
    assert clock.now() == T0 + timedelta(hours=1)


def test_both_are_clocks() -> None:
    clocks: list[Clock] = [SystemClock(), FakeClock(T0)]
    for clock in clocks:
        assert clock.now().utcoffset() == timedelta(0)
