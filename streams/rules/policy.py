"""The deadline policy: how long each rule runs, the no-reason window, reminder offsets, how
long an order without an open case is remembered, and the clock freezes (periods, such as a
holiday, during which deadline time does not run)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal, get_args

import yaml

from streams.contract.times import LATEST_OCCURRED_AT, LONGEST, parse_duration, parse_time
from streams.errors import PolicyError

Rule = Literal[
    "merchant_review",
    "buyer_return",
    "merchant_receipt",
    "unshipped_review",
    "buyer_evidence",
    "merchant_reship",
    "merchant_repair",
    "buyer_escalation",
]
#: The contract's three rules, then this project's additions (topics/README.md):
#: - `unshipped_review` runs only where the policy gives it a duration: the merchant's review of
#:   a refund-only request on an order not shipped yet;
#: - `buyer_evidence`: the buyer's time to send the evidence the merchant asked for;
#: - `merchant_reship` / `merchant_repair`: the merchant's time, from the receipt of the
#:   returned goods, to ship the replacement of an exchange or the repaired goods of a repair;
#: - `buyer_escalation` runs only where the policy gives it a duration: after a rejection, the
#:   buyer's window to ask the platform to step in (without it a rejection closes the case).
RULES: Final[tuple[Rule, ...]] = get_args(Rule)

DEFAULT_DEADLINES: Final[Mapping[Rule, timedelta]] = MappingProxyType(
    {
        "merchant_review": timedelta(hours=48),
        "buyer_return": timedelta(days=10),
        "merchant_receipt": timedelta(days=10),
        # chosen: no marketplace publishes the buyer's evidence time (topics/README.md)
        "buyer_evidence": timedelta(days=3),
        # PDD "收到退回商品后3天内安排换货", JD "72小时为消费者再次发货"
        "merchant_reship": timedelta(days=3),
        # JD "自收到商品之日起30日内修复"
        "merchant_repair": timedelta(days=30),
    }
)
DEFAULT_NO_REASON_WINDOW: Final = timedelta(days=7)
DEFAULT_REMINDERS: Final[Mapping[Rule, tuple[timedelta, ...]]] = MappingProxyType(
    {
        "merchant_review": (timedelta(hours=24), timedelta(hours=2)),
        "buyer_return": (timedelta(days=2),),
        "merchant_receipt": (timedelta(days=2),),
        "unshipped_review": (),
        "buyer_evidence": (timedelta(hours=24),),
        "merchant_reship": (timedelta(hours=24),),
        "merchant_repair": (timedelta(days=3),),
        "buyer_escalation": (),
    }
)


@dataclass(frozen=True, slots=True)
class Policy:
    """Durations of the deadlines, the no-reason window and the reminder offsets."""

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
    #: How many cases one order may open (None: no limit); a request beyond is refused
    #: (`case_limit_reached`).
    max_cases_per_order: int | None = None
    #: When this version took effect (None: the first version, in force before any other).
    effective_from: datetime | None = None
    #: The versions after this one (the first), by `effective_from`; each carries the file's
    #: freezes and retention. A case runs under the version in force when it was requested.
    versions: tuple[Policy, ...] = ()

    def version_at(self, when: datetime) -> Policy:
        """The version in force at `when`: the latest that took effect at or before it."""
        chosen = self
        for version in self.versions:
            assert version.effective_from is not None
            if version.effective_from > when:
                break
            chosen = version
        return chosen

    def version_of(self, effective_from: datetime | None) -> Policy:
        """The version that took effect at `effective_from` (a case keeps it; None: the first)."""
        if effective_from is None or not self.versions:
            return self if effective_from is None else self.version_at(effective_from)
        for version in self.versions:
            if version.effective_from == effective_from:
                return version
        return self.version_at(effective_from)  # a version edited away: the one in force then

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


def reload_refusal(old: Policy, new: Policy, now: datetime) -> str | None:
    """Why a running worker must not take `new` in place of `old` at `now` (None: it may).

    A reload may add or change versions that take effect after `now`, and freezes after `now`;
    nothing that cases already run under: the versions in force up to `now`, the frozen time
    up to `now`, and the retention (a rule change never moves a running deadline, and replay
    from the file's first line gives what the worker gave)."""
    if new.order_retention != old.order_retention:
        return "order_retention changed (it applies to every order: restart the worker)"

    def in_force(policy: Policy) -> list[Policy]:
        chain = [policy, *(v for v in policy.versions if v.effective_from <= now)]  # type: ignore[operator]
        return [replace(v, freezes=(), versions=()) for v in chain]

    if in_force(new) != in_force(old):
        return (
            "a version in force changed or was added with effective_from before now "
            "(a new version must take effect after the worker reads it)"
        )

    def until_now(policy: Policy) -> list[tuple[datetime, datetime]]:
        return [(start, min(end, now)) for start, end in policy.freezes if start < now]

    if until_now(new) != until_now(old):
        return "a freeze before now changed (add freezes ahead of time)"
    return None


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


_RULE_KEYS: Final = frozenset({"deadlines", "no_reason_window", "reminders", "max_cases_per_order"})
_FILE_KEYS: Final = frozenset({"order_retention", "freezes"})


def policy_from_mapping(data: object, source: str = "policy") -> Policy:
    """Build a Policy from parsed YAML: a missing key keeps its default, an unknown one fails.

    Either one version (the rule keys at the top level) or `versions:`, a list of them, each
    but the first with `effective_from`, in time order; a later version's missing keys keep
    the previous version's values. `order_retention` and `freezes` belong to the whole file.
    """
    if data is None:
        return Policy()
    if not isinstance(data, Mapping):
        raise PolicyError(f"{source}: expected a mapping at the top level")
    known = _RULE_KEYS | _FILE_KEYS | {"versions"}
    for key in data:
        if key not in known:
            raise PolicyError(f"{source}: unknown key {key!r} (known: {', '.join(sorted(known))})")
    retention = data.get("order_retention")  # absent or null: forever
    if retention is not None:
        retention = _positive(retention, "order_retention", source)
    base = Policy(order_retention=retention, freezes=merge_freezes(_freezes(data, source)))
    if "versions" not in data:
        return _version(base, data, None, source)
    mixed = sorted(_RULE_KEYS & set(data))
    if mixed:
        raise PolicyError(f"{source}: {mixed[0]} belongs in a version when versions are given")
    items = data["versions"]
    if not isinstance(items, list) or not items:
        raise PolicyError(f"{source}: versions must be a non-empty list of policies")
    versions: list[Policy] = []
    for n, item in enumerate(items, 1):
        where = f"{source}: versions[{n}]"
        if not isinstance(item, Mapping):
            raise PolicyError(f"{where} must be a mapping")
        unknown = sorted(set(item) - _RULE_KEYS - {"effective_from"})
        if unknown:
            raise PolicyError(
                f"{where}: unknown key {unknown[0]!r} (a version holds effective_from, "
                f"{', '.join(sorted(_RULE_KEYS))})"
            )
        start = item.get("effective_from")
        if start is None and n > 1:
            raise PolicyError(f"{where}: effective_from is required after the first version")
        effective = None if start is None else _instant(start, "effective_from", where)
        latest = versions[-1].effective_from if versions else None
        if latest is not None and effective is not None and effective <= latest:
            raise PolicyError(f"{where}: effective_from must be after the previous version's")
        versions.append(_version(versions[-1] if versions else base, item, effective, where))
    first, *later = versions
    return replace(first, versions=tuple(later))


def _version(
    previous: Policy, data: Mapping[str, object], effective: datetime | None, source: str
) -> Policy:
    """`previous` with the rule keys of `data`, in force from `effective`."""
    deadlines = dict(previous.deadlines)
    for rule, value in _rule_map(data.get("deadlines"), "deadlines", source).items():
        deadlines[rule] = _positive(value, f"deadlines.{rule}", source)
    window = previous.no_reason_window
    if "no_reason_window" in data:
        window = _positive(data["no_reason_window"], "no_reason_window", source)
    reminders = dict(previous.reminders)
    for rule, value in _rule_map(data.get("reminders"), "reminders", source).items():
        if value is None:
            value = []
        if not isinstance(value, list):
            raise PolicyError(f"{source}: reminders.{rule} must be a list of durations")
        offsets = {_positive(item, f"reminders.{rule}", source) for item in value}
        reminders[rule] = tuple(sorted(offsets, reverse=True))
    limit = previous.max_cases_per_order
    if "max_cases_per_order" in data:
        value = data["max_cases_per_order"]  # null: no limit
        if value is not None and (type(value) is not int or value < 1):
            raise PolicyError(f"{source}: max_cases_per_order must be a whole number >= 1")
        limit = value
    return replace(
        previous,
        deadlines=deadlines,
        no_reason_window=window,
        reminders=reminders,
        max_cases_per_order=limit,
        effective_from=effective,
        versions=(),
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


def _freezes(data: Mapping[str, object], source: str) -> list[tuple[datetime, datetime]]:
    """`freezes:` a list of {from: TIME, to: TIME, name: TEXT} (name optional)."""
    value = data.get("freezes")
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
