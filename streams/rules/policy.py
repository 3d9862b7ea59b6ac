"""The deadline policy: how long each rule runs, the no-reason window, reminder offsets, how
long an order without an open case is remembered, and the clock freezes (periods, such as a
holiday, during which deadline time does not run)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal

import yaml

from streams.contract.times import LATEST_OCCURRED_AT, LONGEST, parse_duration, parse_time
from streams.errors import PolicyError

Rule = Literal["merchant_review", "buyer_return", "merchant_receipt"]
RULES: Final[tuple[Rule, ...]] = ("merchant_review", "buyer_return", "merchant_receipt")

DEFAULT_DEADLINES: Final[Mapping[Rule, timedelta]] = MappingProxyType(
    {
        "merchant_review": timedelta(hours=48),
        "buyer_return": timedelta(days=10),
        "merchant_receipt": timedelta(days=10),
    }
)
DEFAULT_NO_REASON_WINDOW: Final = timedelta(days=7)
DEFAULT_REMINDERS: Final[Mapping[Rule, tuple[timedelta, ...]]] = MappingProxyType(
    {
        "merchant_review": (timedelta(hours=24), timedelta(hours=2)),
        "buyer_return": (timedelta(days=2),),
        "merchant_receipt": (timedelta(days=2),),
    }
)


@dataclass(frozen=True, slots=True)
class Policy:
    """Durations of the three deadlines, the no-reason window and the reminder offsets."""

    deadlines: Mapping[Rule, timedelta] = field(default_factory=lambda: dict(DEFAULT_DEADLINES))
    no_reason_window: timedelta = DEFAULT_NO_REASON_WINDOW
    #: Every rule has an entry (possibly empty), largest offset first.
    reminders: Mapping[Rule, tuple[timedelta, ...]] = field(
        default_factory=lambda: dict(DEFAULT_REMINDERS)
    )
    #: How long an order with no open case is kept after the latest instant it saw (an
    #: applied event's `occurred_at` or a fired deadline); None keeps every order forever.
    order_retention: timedelta | None = None
    #: Periods [start, end) during which deadline time does not run: sorted, and overlapping,
    #: nested or adjacent ones merged (`merge_freezes`).
    freezes: tuple[tuple[datetime, datetime], ...] = ()

    def offsets(self, rule: Rule) -> tuple[timedelta, ...]:
        """Reminder offsets of `rule`, largest first (so their remind_at come in time order)."""
        return self.reminders[rule]

    def deadline_after(self, at: datetime, running: timedelta) -> datetime:
        """The deadline `running` of deadline time after `at`: time within a freeze does not
        count, a deadline started within a freeze starts running at its end, and one that
        would fall at or after a freeze's start moves by the frozen time it spans (a deadline
        never falls within a freeze; it may fall at its end)."""
        when = at + running
        freezes = self.freezes
        if not freezes or when < freezes[0][0] or at >= freezes[-1][1]:
            return when  # the common case: no freeze in the way
        now, left = at, running
        for start, end in freezes:
            if end <= now:
                continue
            if now < start:
                if now + left < start:
                    return now + left
                left -= start - now
            now = end
        return now + left

    def running_between(self, at: datetime, due: datetime) -> timedelta:
        """The deadline time in [at, due): wall time less the frozen time within it."""
        running = due - at
        for start, end in self.freezes:
            overlap = min(end, due) - max(start, at)
            if overlap > timedelta(0):
                running -= overlap
        return running


def merge_freezes(
    periods: list[tuple[datetime, datetime]],
) -> tuple[tuple[datetime, datetime], ...]:
    """Periods sorted, with those that overlap, nest or touch merged into one."""
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(periods):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return tuple(merged)


def policy_from_mapping(data: object, source: str = "policy") -> Policy:
    """Build a Policy from parsed YAML: a missing key keeps its default, an unknown one fails."""
    if data is None:
        return Policy()
    if not isinstance(data, Mapping):
        raise PolicyError(f"{source}: expected a mapping at the top level")
    known = {"deadlines", "no_reason_window", "reminders", "order_retention", "freezes"}
    for key in data:
        if key not in known:
            raise PolicyError(f"{source}: unknown key {key!r} (known: {', '.join(sorted(known))})")
    deadlines = dict(DEFAULT_DEADLINES)
    for rule, value in _rule_map(data.get("deadlines"), "deadlines", source).items():
        deadlines[rule] = _positive(value, f"deadlines.{rule}", source)
    window = DEFAULT_NO_REASON_WINDOW
    if "no_reason_window" in data:
        window = _positive(data["no_reason_window"], "no_reason_window", source)
    reminders = dict(DEFAULT_REMINDERS)
    for rule, value in _rule_map(data.get("reminders"), "reminders", source).items():
        if value is None:
            value = []
        if not isinstance(value, list):
            raise PolicyError(f"{source}: reminders.{rule} must be a list of durations")
        offsets = {_positive(item, f"reminders.{rule}", source) for item in value}
        reminders[rule] = tuple(sorted(offsets, reverse=True))
    retention = data.get("order_retention")  # absent or null: forever
    if retention is not None:
        retention = _positive(retention, "order_retention", source)
    return Policy(
        deadlines=deadlines,
        no_reason_window=window,
        reminders=reminders,
        order_retention=retention,
        freezes=merge_freezes(_freezes(data.get("freezes"), source)),
    )


def resolve_policy(value: str | Path | None) -> Policy:
    """The policy `value` names: a preset's name (`streams/rules/presets/`), else a policy
    file's path (a file named like a preset is read as `./kuaishou`); None gives the default
    policy."""
    from streams.rules import presets

    if isinstance(value, str) and value in presets.NAMES:
        return presets.load(value)
    try:
        return load_policy(value)
    except PolicyError as exc:
        if isinstance(value, str) and "/" not in value and not Path(value).exists():
            raise PolicyError(f"{exc} (or a preset: {', '.join(presets.NAMES)})") from None
        raise


def load_policy(path: str | Path | None) -> Policy:
    """Read a policy file (YAML); None gives the default policy."""
    if path is None:
        return Policy()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise PolicyError(f"policy file {path} is not UTF-8 text") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy file {path} is not valid YAML: {exc}") from exc
    return policy_from_mapping(data, str(path))


def _rule_map(value: object, name: str, source: str) -> dict[Rule, object]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PolicyError(f"{source}: {name} must be a mapping of rule to value")
    out: dict[Rule, object] = {}
    for key, item in value.items():
        rule = next((r for r in RULES if r == key), None)
        if rule is None:
            raise PolicyError(
                f"{source}: unknown key {name}.{key} (known rules: {', '.join(RULES)})"
            )
        out[rule] = item
    return out


def _freezes(value: object, source: str) -> list[tuple[datetime, datetime]]:
    """`freezes:` a list of {from: TIME, to: TIME, name: TEXT} (name optional)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise PolicyError(f"{source}: freezes must be a list of {{from: TIME, to: TIME}}")
    periods = []
    for n, item in enumerate(value, 1):
        where = f"freezes[{n}]"
        if not isinstance(item, Mapping) or not {"from", "to"} <= set(item):
            raise PolicyError(f"{source}: {where} must be a mapping with from and to")
        unknown = set(item) - {"from", "to", "name"}
        if unknown:
            raise PolicyError(f"{source}: {where}: unknown key {sorted(unknown)[0]!r}")
        start = _instant(item["from"], f"{where}.from", source)
        end = _instant(item["to"], f"{where}.to", source)
        if end <= start:
            raise PolicyError(f"{source}: {where}: to must be after from")
        if end > LATEST_OCCURRED_AT:
            raise PolicyError(f"{source}: {where}: to must be before the year 9000")
        periods.append((start, end))
    return periods


def _instant(value: object, name: str, source: str) -> datetime:
    """An RFC 3339 time with an offset (YAML may have read it as a datetime already)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise PolicyError(f"{source}: {name}: {value} has no offset (write e.g. +08:00)")
        value = value.isoformat()
    try:
        return parse_time(str(value))
    except ValueError as exc:
        raise PolicyError(f"{source}: {name}: {exc}") from None


def _positive(value: object, name: str, source: str) -> timedelta:
    try:
        duration = parse_duration(value)
    except ValueError as exc:
        raise PolicyError(f"{source}: {name}: {exc}") from exc
    if duration <= timedelta(0):
        raise PolicyError(f"{source}: {name} must be positive, got {value!r}")
    if duration > LONGEST:
        raise PolicyError(
            f"{source}: {name} must be at most {LONGEST.days} days (P{LONGEST.days}D), "
            f"got {value!r}"
        )
    return duration
