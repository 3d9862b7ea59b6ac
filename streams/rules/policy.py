"""The deadline policy: how long each rule runs, the no-reason window, reminder offsets and
how long an order without an open case is remembered."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal

import yaml

from streams.contract.times import LONGEST, parse_duration
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

    def offsets(self, rule: Rule) -> tuple[timedelta, ...]:
        """Reminder offsets of `rule`, largest first (so their remind_at come in time order)."""
        return self.reminders[rule]


def policy_from_mapping(data: object, source: str = "policy") -> Policy:
    """Build a Policy from parsed YAML: a missing key keeps its default, an unknown one fails."""
    if data is None:
        return Policy()
    if not isinstance(data, Mapping):
        raise PolicyError(f"{source}: expected a mapping at the top level")
    known = {"deadlines", "no_reason_window", "reminders", "order_retention"}
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
