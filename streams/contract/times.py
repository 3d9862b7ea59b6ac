"""Instants and durations: parsing RFC 3339 / ISO 8601 and formatting output times.

An instant is always a timezone-aware `datetime` in UTC; a duration is a `timedelta`.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Annotated

import msgspec

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: An event's occurred_at must be before this, and a policy duration at most `LONGEST`: every
#: instant counted from them (deadlines, reminders, a deadline chained on a fired one, a
#: retention) then stays within year 9999, where Python's datetime ends.
LATEST_OCCURRED_AT = datetime(9000, 1, 1, tzinfo=UTC)
LONGEST = timedelta(days=36_500)
#: No deadline set by an event is later (a resumed one included): one more deadline chained
#: on it and a retention after that still end before year 9999.
LATEST_DUE = LATEST_OCCURRED_AT + LONGEST
#: An instant in a msgspec Struct: decoding refuses a time without an offset.
Instant = Annotated[datetime, msgspec.Meta(tz=True)]

_RFC3339 = re.compile(
    r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(?:\.\d+)?(?:[Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)\Z", re.ASCII
)
_ISO_DURATION = re.compile(
    r"P(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?\Z",
    re.ASCII,
)
_CALENDAR_UNITS = re.compile(r"P(?:[^T]*[YM])", re.ASCII)


_fromisoformat = datetime.fromisoformat
_rfc3339 = _RFC3339.match


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 time with an offset into a UTC datetime; ValueError if it is not one.

    Fractions finer than a microsecond are truncated; a leap second (`:60`) is refused.
    """
    if _rfc3339(text) is None:
        raise ValueError(f"not an RFC 3339 time with an offset: {text!r}")
    try:
        try:
            when = _fromisoformat(text)
        except ValueError:  # RFC 3339 allows `t` and `z`, fromisoformat only `T` and `Z`
            when = _fromisoformat(text.upper())
        if when.tzinfo is not UTC:
            when = when.astimezone(UTC)
    except OverflowError:  # a local time whose UTC instant is before year 1 or after 9999
        raise ValueError(f"time out of range: {text!r}") from None
    return when


def is_time(text: str) -> bool:
    """True when `text` is an RFC 3339 time with an offset that denotes a real instant."""
    try:
        parse_time(text)
    except ValueError:
        return False
    return True


#: "00".."99" and ".000Z".."999Z": output times are formatted by lookup, not by isoformat()
#: (which costs about 1.2 us; an output record has two times).
_TWO_DIGITS = tuple(f"{n:02d}" for n in range(100))
_MILLIS = tuple(f".{n:03d}Z" for n in range(1000))


@lru_cache(maxsize=1024)
def _date_prefix(year: int, month: int, day: int) -> str:
    return f"{year:04d}-{month:02d}-{day:02d}T"


def format_time(when: datetime) -> str:
    """Format an instant as UTC with `Z`: whole seconds bare, else milli- or microseconds."""
    if when.tzinfo is not UTC:
        when = when.astimezone(UTC)
    two = _TWO_DIGITS
    text = (
        f"{_date_prefix(when.year, when.month, when.day)}"
        f"{two[when.hour]}:{two[when.minute]}:{two[when.second]}"
    )
    micro = when.microsecond
    if micro == 0:
        return text + "Z"
    if micro % 1000 == 0:
        return text + _MILLIS[micro // 1000]
    return f"{text}.{micro:06d}Z"


def parse_duration(value: object) -> timedelta:
    """Parse an ISO 8601 duration (weeks to seconds) or a number of seconds into a timedelta."""
    try:
        return _parse_duration(value)
    except OverflowError:
        raise ValueError(f"duration out of range: {value!r}") from None


def _parse_duration(value: object) -> timedelta:
    seconds: object = value
    if isinstance(value, str):
        try:
            seconds = float(value.strip())
        except ValueError:
            return _parse_iso_duration(value)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ValueError(f"not a duration: {value!r}")
    if not math.isfinite(seconds):
        raise ValueError(f"not a finite duration: {value!r}")
    return timedelta(seconds=seconds)


def _parse_iso_duration(value: str) -> timedelta:
    text = value.strip()
    match = _ISO_DURATION.match(text)
    if match is None or text in ("P", "PT") or text.endswith("T"):
        if _CALENDAR_UNITS.match(text):
            raise ValueError(
                f"{value!r}: months and years have no fixed length; use weeks, days or hours"
            )
        raise ValueError(f"not an ISO 8601 duration or a number of seconds: {value!r}")
    parts = {name: float(num) for name, num in match.groupdict().items() if num is not None}
    return timedelta(**parts)


@lru_cache(maxsize=64)  # a policy has a handful of reminder offsets; one is formatted per reminder
def format_seconds(duration: timedelta) -> str:
    """Seconds of a duration as in a notification_id: `86400`, `0.5`."""
    seconds = duration.total_seconds()
    # A plain decimal, never exponent notation (7.2e-05 -> 0.000072).
    return str(int(seconds)) if seconds.is_integer() else f"{Decimal(repr(seconds)):f}"
