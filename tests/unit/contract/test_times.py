"""Parsing and formatting of instants (RFC 3339) and durations (ISO 8601 or seconds)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.contract.times import format_seconds, format_time, is_time, parse_duration, parse_time

CHINA = timezone(timedelta(hours=8))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-01T10:00:00Z", datetime(2026, 11, 1, 10, tzinfo=UTC)),
        ("2026-11-01T18:00:00+08:00", datetime(2026, 11, 1, 10, tzinfo=UTC)),
        ("2026-11-01T05:30:00-04:30", datetime(2026, 11, 1, 10, tzinfo=UTC)),
        ("2026-11-01T10:00:00-00:00", datetime(2026, 11, 1, 10, tzinfo=UTC)),
        ("2026-11-01t10:00:00z", datetime(2026, 11, 1, 10, tzinfo=UTC)),
        ("2026-11-01t18:00:00+08:00", datetime(2026, 11, 1, 10, tzinfo=UTC)),
        ("2026-11-01T10:00:00.2Z", datetime(2026, 11, 1, 10, 0, 0, 200000, tzinfo=UTC)),
        ("2026-11-01T10:00:00.21Z", datetime(2026, 11, 1, 10, 0, 0, 210000, tzinfo=UTC)),
        ("2026-11-01T10:00:00.210Z", datetime(2026, 11, 1, 10, 0, 0, 210000, tzinfo=UTC)),
        ("2026-11-01T10:00:00.123456Z", datetime(2026, 11, 1, 10, 0, 0, 123456, tzinfo=UTC)),
        # Finer than a microsecond: truncated, never rounded up.
        ("2026-11-01T10:00:00.1234567Z", datetime(2026, 11, 1, 10, 0, 0, 123456, tzinfo=UTC)),
        ("2026-11-01T10:00:00.999999999Z", datetime(2026, 11, 1, 10, 0, 0, 999999, tzinfo=UTC)),
        ("2026-11-01T10:00:00.5+08:00", datetime(2026, 11, 1, 2, 0, 0, 500000, tzinfo=UTC)),
        ("2026-11-01T02:00:00+08:00", datetime(2026, 10, 31, 18, tzinfo=UTC)),
        ("2028-02-29T00:00:00Z", datetime(2028, 2, 29, tzinfo=UTC)),
    ],
)
def test_parse_time_accepts_rfc3339_and_converts_to_utc(text: str, expected: datetime) -> None:
    parsed = parse_time(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC
    assert parsed.utcoffset() == timedelta(0)
    assert is_time(text)


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-01T10:00:00",  # no offset
        "2026-11-01T10:00:00.5",  # no offset, with fraction
        "2026-11-01",  # date only
        "10:00:00Z",  # time only
        "20261101T100000Z",  # basic format
        "2026-11-01 10:00:00Z",  # space separator
        "2026-11-01T10:00:00+0800",  # offset without colon
        "2026-11-01T10:00:00+08",  # hour-only offset
        "2026-11-01T10:00Z",  # no seconds
        "2026-11-01T10:00:00.Z",  # empty fraction
        "2026-11-01T10:00:00,5Z",  # comma fraction
        "2026-12-31T23:59:60Z",  # leap second
        "2026-11-01T10:00:60Z",
        "2026-02-29T10:00:00Z",  # not a leap year
        "2026-13-01T10:00:00Z",
        "2026-11-31T10:00:00Z",
        "2026-11-01T24:00:00Z",
        "2026-11-01T10:60:00Z",
        "2026-11-01T10:00:00+24:00",
        "2026-11-01T10:00:00Z\n",
        " 2026-11-01T10:00:00Z",
        "2026-11-01T10:00:00ZZ",
        "２０２６-11-01T10:00:00Z",  # non-ASCII digits  # noqa: RUF001
        "",
        "yesterday",
        "garbage",
    ],
)
def test_parse_time_refuses_what_is_not_rfc3339_with_offset(text: str) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        parse_time(text)
    assert not is_time(text)


@pytest.mark.parametrize(
    "text",
    ["2026-11-01T10:00:00+08:60", "2026-11-01T10:00:00+08:99", "2026-11-01T10:00:00-00:75"],
)
def test_parse_time_refuses_offset_minutes_beyond_59(text: str) -> None:
    # RFC 3339: time-numoffset = ("+" / "-") time-hour ":" time-minute, time-minute = 00-59.
    with pytest.raises(ValueError, match=r"\S"):
        parse_time(text)
    assert not is_time(text)


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (datetime(2026, 11, 3, 10, tzinfo=UTC), "2026-11-03T10:00:00Z"),
        (datetime(2026, 11, 3, 10, 0, 0, 210000, tzinfo=UTC), "2026-11-03T10:00:00.210Z"),
        (datetime(2026, 11, 3, 10, 0, 0, 1000, tzinfo=UTC), "2026-11-03T10:00:00.001Z"),
        (datetime(2026, 11, 3, 10, 0, 0, 210001, tzinfo=UTC), "2026-11-03T10:00:00.210001Z"),
        (datetime(2026, 11, 3, 10, 0, 0, 1, tzinfo=UTC), "2026-11-03T10:00:00.000001Z"),
        (datetime(2026, 11, 3, 18, tzinfo=CHINA), "2026-11-03T10:00:00Z"),
        (datetime(2026, 11, 3, 2, 0, 0, 500000, tzinfo=CHINA), "2026-11-02T18:00:00.500Z"),
        (datetime(5, 1, 2, 3, 4, 5, tzinfo=UTC), "0005-01-02T03:04:05Z"),
        (datetime(999, 12, 31, 23, 59, 59, tzinfo=UTC), "0999-12-31T23:59:59Z"),
    ],
)
def test_format_time(when: datetime, expected: str) -> None:
    assert format_time(when) == expected


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(
        min_value=datetime(1000, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive
        max_value=datetime(9999, 12, 31, 23, 59, 59),  # noqa: DTZ001
        timezones=st.just(UTC),
    )
)
def test_format_then_parse_round_trips(when: datetime) -> None:
    text = format_time(when)
    assert parse_time(text) == when
    assert format_time(parse_time(text)) == text
    assert text.endswith("Z")


@settings(max_examples=500, deadline=None)
@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),  # noqa: DTZ001 - hypothesis bounds are naive
        max_value=datetime(9999, 12, 30),  # noqa: DTZ001
        timezones=st.sampled_from([UTC, CHINA]),
    ),
    st.sampled_from([1, 1000, 1_000_000]),
)
def test_format_time_matches_isoformat(when: datetime, precision: int) -> None:
    # the lookup-table formatter against the obvious one built on isoformat()
    when = when.replace(microsecond=when.microsecond // precision * precision)
    iso = when.astimezone(UTC).isoformat()[:26]  # YYYY-MM-DDTHH:MM:SS[.ffffff]
    micro = when.microsecond
    expected = iso[:19] if micro == 0 else iso[:23] if micro % 1000 == 0 else iso
    assert format_time(when) == expected + "Z"


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(
        min_value=datetime(1000, 1, 2),  # noqa: DTZ001
        max_value=datetime(9999, 12, 30),  # noqa: DTZ001
        timezones=st.sampled_from([UTC, CHINA, timezone(timedelta(hours=-5, minutes=-30))]),
    )
)
def test_format_converts_any_offset_to_utc(when: datetime) -> None:
    text = format_time(when)
    assert parse_time(text) == when
    assert text.endswith("Z")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("PT48H", timedelta(hours=48)),
        ("P10D", timedelta(days=10)),
        ("P2D", timedelta(days=2)),
        ("P7D", timedelta(days=7)),
        ("P1W", timedelta(weeks=1)),
        ("PT1.5S", timedelta(seconds=1.5)),
        ("PT0.5S", timedelta(milliseconds=500)),
        ("P1DT2H30M", timedelta(days=1, hours=2, minutes=30)),
        ("PT30M", timedelta(minutes=30)),
        ("PT2H", timedelta(hours=2)),
        ("P1DT1S", timedelta(days=1, seconds=1)),
        (86400, timedelta(days=1)),
        (0.5, timedelta(milliseconds=500)),
        (7200.0, timedelta(hours=2)),
        ("86400", timedelta(days=1)),
        ("0.5", timedelta(milliseconds=500)),
        ("1.25", timedelta(seconds=1.25)),
    ],
)
def test_parse_duration_accepts(value: object, expected: timedelta) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize("value", ["P1M", "P1Y", "P1Y2M", "P2M10D"])
def test_parse_duration_refuses_months_and_years(value: str) -> None:
    with pytest.raises(ValueError, match="months and years have no fixed length"):
        parse_duration(value)


@pytest.mark.parametrize(
    "value",
    ["P", "PT", "P1DT", "PT1H2D", "1D", "P-1D", "abc", "", "P1.5", True, False, None, [1], {}],
)
def test_parse_duration_refuses(value: object) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        parse_duration(value)


@pytest.mark.parametrize("value", ["inf", float("inf"), 1e20, "1e20", "P99999999999D"])
def test_parse_duration_out_of_range_is_a_value_error(value: object) -> None:
    # Callers (the policy loader, the CLI) only catch ValueError; an out-of-range duration is
    # just another value that is not a usable duration.
    with pytest.raises(ValueError, match=r"\S"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("duration", "expected"),
    [
        (timedelta(days=1), "86400"),
        (timedelta(milliseconds=500), "0.5"),
        (timedelta(hours=2), "7200"),
        (timedelta(days=2), "172800"),
        (timedelta(seconds=1.25), "1.25"),
        (timedelta(days=10, microseconds=1), "864000.000001"),
    ],
)
def test_format_seconds(duration: timedelta, expected: str) -> None:
    assert format_seconds(duration) == expected


@pytest.mark.parametrize(
    ("duration", "expected"),
    [(timedelta(microseconds=1), "0.000001"), (timedelta(microseconds=72), "0.000072")],
)
def test_format_seconds_is_a_plain_decimal(duration: timedelta, expected: str) -> None:
    # topics/README.md: "else as the shortest decimal (`0.5`)" - never exponent notation.
    assert format_seconds(duration) == expected


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=10**12).map(lambda us: timedelta(microseconds=us)))
def test_format_seconds_reads_back_as_the_same_duration(duration: timedelta) -> None:
    assert parse_duration(format_seconds(duration)) == duration


def test_validating_then_parsing_the_same_string_gives_its_own_instant() -> None:
    # The reference validator checks a time with is_time(), then decode() parses it again.
    first, second = "2026-11-01T18:00:00+08:00", "2026-11-01T10:00:01Z"
    assert is_time(first)
    assert parse_time(first) == datetime(2026, 11, 1, 10, tzinfo=UTC)
    assert not is_time("2026-02-29T10:00:00Z")
    assert parse_time(second) == datetime(2026, 11, 1, 10, 0, 1, tzinfo=UTC)
    assert parse_time(first) == datetime(2026, 11, 1, 10, tzinfo=UTC)
    with pytest.raises(ValueError, match="not an RFC 3339"):
        parse_time(first + " ")
