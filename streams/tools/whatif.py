"""`aftersale whatif EVENTS --policy A --policy B`: one event log replayed under two policies,
and what changes: the cases whose path differs (an auto-approval where the merchant answered,
an auto-close where the buyer shipped back, an auto-refund where the merchant confirmed
receipt), the cases and amounts refunded under each, and the refund rate under each.

Each side is `aftersale replay --status` into a temporary folder; a case's path is the list of
what changed it (`aftersale.approved`, `auto_approve`, ...), read from the status feed.
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from streams.errors import ConfigError
from streams.rules.policy import Policy
from streams.tools.replay import STATUS_FILE, replay
from streams.tools.summary import Summary

#: (order id, case id)
CaseKey = tuple[str, str]


@dataclass(slots=True)
class CaseRun:
    """One case under one policy: what changed it, in order, and how it ended."""

    path: list[str] = field(default_factory=list)
    outcome: str | None = None
    amount: int = 0
    currency: str = "CNY"


@dataclass(slots=True)
class Side:
    """One policy's replay: its summary and its cases."""

    label: str
    summary: Summary
    cases: dict[CaseKey, CaseRun]

    def refunded(self) -> dict[str, tuple[int, int]]:
        """Cases closed refunded: (count, amount in the currency's minor unit) by currency."""
        out: dict[str, tuple[int, int]] = {}
        for case in self.cases.values():
            if case.outcome == "refunded":
                count, amount = out.get(case.currency, (0, 0))
                out[case.currency] = (count + 1, amount + case.amount)
        return out


def run_side(
    events: Path,
    policy: Policy,
    label: str,
    until: datetime | None,
    progress: Callable[[int, int], None] | None,
) -> Side:
    """Replay `events` under `policy` and read back every case's path."""
    with tempfile.TemporaryDirectory(prefix="aftersale-whatif-") as folder:
        out = Path(folder)
        summary = replay(events, out, policy, until, progress, status=True)
        cases: dict[CaseKey, CaseRun] = {}
        with (out / STATUS_FILE).open("rb") as status:
            for line in status:
                record = orjson.loads(line)
                if record["type"] != "case":
                    continue
                key = (record["order_id"], record["case_id"])
                case = cases.get(key)
                if case is None:
                    case = cases[key] = CaseRun(
                        amount=record["amount"], currency=record["currency"]
                    )
                case.path.append(record["what"])
                case.outcome = record["outcome"]
    return Side(label, summary, cases)


@dataclass(slots=True)
class WhatIf:
    """Two sides of one log, and the cases whose path differs."""

    a: Side
    b: Side
    differ: list[CaseKey]

    def divergences(self) -> Counter[tuple[str, str]]:
        """How the differing cases first part: (A's step, B's step) at the first difference
        ("-" where a side's path ended)."""
        counts: Counter[tuple[str, str]] = Counter()
        for key in self.differ:
            counts[_first_difference(self._path(self.a, key), self._path(self.b, key))] += 1
        return counts

    @staticmethod
    def _path(side: Side, key: CaseKey) -> list[str]:
        case = side.cases.get(key)
        return [] if case is None else case.path

    def as_dict(self) -> dict[str, Any]:
        def side(s: Side) -> dict[str, Any]:
            return {
                "policy": s.label,
                "cases": len(s.cases),
                "refunded": {
                    currency: {"cases": count, "amount": amount}
                    for currency, (count, amount) in sorted(s.refunded().items())
                },
                "refund_rate": s.summary.refund_rate,
                "refunded_orders": s.summary.refunded_orders,
                "paid_orders": s.summary.paid_orders,
                "actions": dict(sorted(s.summary.actions.items())),
            }

        return {
            "events_read": self.a.summary.read,
            "a": side(self.a),
            "b": side(self.b),
            "cases_that_differ": len(self.differ),
            "first_differences": [
                {"a": step_a, "b": step_b, "cases": n}
                for (step_a, step_b), n in self.divergences().most_common()
            ],
            "cases": [
                {
                    "order_id": order_id,
                    "case_id": case_id,
                    "a": _case_dict(self.a.cases.get((order_id, case_id))),
                    "b": _case_dict(self.b.cases.get((order_id, case_id))),
                }
                for order_id, case_id in self.differ
            ],
        }

    def render(self, examples: int = 5) -> str:
        a, b = self.a, self.b
        width = max(len(a.label), len(b.label), 14)
        rows = [
            ("cases", f"{len(a.cases):,}", f"{len(b.cases):,}"),
        ]
        currencies = sorted(set(a.refunded()) | set(b.refunded()))
        for currency in currencies or ["CNY"]:
            ca, ma = a.refunded().get(currency, (0, 0))
            cb, mb = b.refunded().get(currency, (0, 0))
            rows.append((f"refunded cases ({currency})", f"{ca:,}", f"{cb:,}"))
            rows.append((f"refunded amount ({currency})", f"{ma / 100:,.2f}", f"{mb / 100:,.2f}"))
        rows.append(("refund rate", _rate(a.summary), _rate(b.summary)))
        for action in sorted(set(a.summary.actions) | set(b.summary.actions)):
            rows.append(
                (action, f"{a.summary.actions[action]:,}", f"{b.summary.actions[action]:,}")
            )
        label_width = max(len(r[0]) for r in rows)
        lines = [
            f"whatif: {a.summary.read:,} events read, under {a.label} and under {b.label}",
            f"{'':<{label_width}}  {a.label:>{width}}  {b.label:>{width}}",
            *(f"{name:<{label_width}}  {x:>{width}}  {y:>{width}}" for name, x, y in rows),
        ]
        total = len(set(a.cases) | set(b.cases))
        share = f" ({len(self.differ) / total:.1%} of {total:,})" if total else ""
        lines.append(f"cases whose path differs: {len(self.differ):,}{share}")
        divergences = self.divergences().most_common()
        if divergences:
            lines.append(f"  where they first part ({a.label} | {b.label}):")
            lines += [f"  {n:>9,}  {x} | {y}" for (x, y), n in divergences]
        for order_id, case_id in self.differ[:examples]:
            key = (order_id, case_id)
            lines.append(f"  e.g. {order_id} {case_id}:")
            for side in (a, b):
                lines.append(f"    {side.label:<{width}}  {_describe(side.cases.get(key))}")
        return "\n".join(lines)


def whatif(
    events: Path,
    policies: tuple[tuple[str, Policy], tuple[str, Policy]],
    until: datetime | None = None,
    progress: Callable[[str], Callable[[int, int], None]] | None = None,
) -> WhatIf:
    """Replay `events` under both policies ((label, policy) each) and compare the cases."""
    (label_a, policy_a), (label_b, policy_b) = policies
    a = run_side(events, policy_a, label_a, until, None if progress is None else progress(label_a))
    b = run_side(events, policy_b, label_b, until, None if progress is None else progress(label_b))
    keys = sorted(set(a.cases) | set(b.cases))
    differ = [
        key
        for key in keys
        if (a.cases.get(key) is None or b.cases.get(key) is None)
        or (a.cases[key].path, a.cases[key].outcome) != (b.cases[key].path, b.cases[key].outcome)
    ]
    return WhatIf(a, b, differ)


def _first_difference(x: list[str], y: list[str]) -> tuple[str, str]:
    for step_x, step_y in zip(x, y, strict=False):
        if step_x != step_y:
            return step_x, step_y
    n = min(len(x), len(y))
    return (x[n] if len(x) > n else "-"), (y[n] if len(y) > n else "-")


def _case_dict(case: CaseRun | None) -> dict[str, Any] | None:
    if case is None:
        return None
    return {"path": case.path, "outcome": case.outcome, "amount": case.amount}


def _describe(case: CaseRun | None) -> str:
    if case is None:
        return "(no such case: refused)"
    ending = case.outcome or "still open"
    return " > ".join(step.removeprefix("aftersale.") for step in case.path) + f": {ending}"


def _rate(summary: Summary) -> str:
    rate = summary.refund_rate
    return "n/a" if rate is None else f"{rate:.2%}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from streams.tools.policy import POLICY_HELP

    parser.add_argument("events", type=Path, metavar="EVENTS.jsonl", help="input events")
    parser.add_argument(
        "--policy",
        action="append",
        metavar="NAME|FILE",
        required=True,
        help="give it twice, A then B: " + POLICY_HELP,
    )
    parser.add_argument(
        "--until",
        metavar="TIME",
        help="advance the clock to this RFC 3339 time after the last line (as replay)",
    )
    parser.add_argument("--json", action="store_true", help="the comparison as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress")
    parser.add_argument(
        "--examples", type=int, default=5, metavar="N", help="differing cases shown (default 5)"
    )


def run(args: argparse.Namespace, until: datetime | None) -> int:
    """The `aftersale whatif` command."""
    from streams.rules.policy import resolve_policy
    from streams.tools.replay import ProgressLine

    if len(args.policy) != 2:
        raise ConfigError(f"give --policy twice (A, then B), not {len(args.policy)} time(s)")
    if not args.events.is_file():
        raise ConfigError(f"input file not found: {args.events}")
    policies = ((args.policy[0], resolve_policy(args.policy[0])),
                (args.policy[1], resolve_policy(args.policy[1])))  # fmt: skip
    if policies[0][0] == policies[1][0]:
        raise ConfigError(f"both --policy are {policies[0][0]}: nothing to compare")

    def progress(label: str) -> Callable[[int, int], None]:
        return ProgressLine(label=f"whatif under {label}")

    result = whatif(args.events, policies, until, None if args.quiet else progress)
    if args.json:
        print(orjson.dumps(result.as_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        print(result.render(max(0, args.examples)))
    return 0
