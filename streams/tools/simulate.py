"""`aftersale simulate`: a seeded, deterministic generator of realistic event streams.

Orders are paid, shipped and delivered; some get after-sale cases whose merchants answer in
time, late or never, whose buyers ship the goods back or not; some cases are rejected and
re-opened, escalated and resolved, withdrawn. With `--every-path` (`Mix.every_path`), also
the paths this project adds to the contract's: refund requests before shipment, the merchant's
own refunds, evidence requests answered or not, exchanges and repairs reshipped or not, and
escalations within the window after a rejection (where the policy gives one). Producers retry
(duplicate event_ids) and a share of the input is bad. Lines come out in `occurred_at` order
(arrival order), with occurred_at written in UTC or in China time (+08:00).
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from streams.contract.times import format_seconds, format_time, parse_duration, parse_time
from streams.errors import ConfigError
from streams.rules.policy import Policy, resolve_policy
from streams.tools.policy import POLICY_HELP

CHINA = timezone(timedelta(hours=8))
REASONS = ("quality", "logistics", "not_as_described", "no_reason", "mistaken_order", "other")
DEFAULT_START = "2026-11-01T00:00:00Z"


@dataclass(frozen=True, slots=True)
class Mix:
    """Shares of behaviours in the simulated population."""

    case_rate: float = 0.35
    retry_rate: float = 0.02
    bad_rate: float = 0.01
    escalate_rate: float = 0.05
    withdraw_rate: float = 0.04
    #: Also the paths beyond the contract's (off: a seed gives the stream it always gave).
    every_path: bool = False


class _Story:
    """Builds one order's events; times are business times before time scaling."""

    def __init__(self, rng: random.Random, policy: Policy, scale: float, mix: Mix) -> None:
        self.rng, self.policy, self.scale, self.mix = rng, policy, scale, mix
        self.events: list[tuple[datetime, dict[str, Any]]] = []
        self._ids = 0

    def gap(self, low_hours: float, high_hours: float) -> timedelta:
        return timedelta(hours=self.rng.uniform(low_hours, high_hours) / self.scale)

    def share(self, rule: str, low: float, high: float) -> timedelta:
        return self.policy.deadlines[rule] * self.rng.uniform(low, high)  # type: ignore[index]

    def emit(self, at: datetime, event_type: str, order_id: str, /, **fields: Any) -> None:
        self._ids += 1
        at = at.replace(microsecond=at.microsecond // 1000 * 1000)  # producers stamp in ms
        body = {"event_id": f"{order_id}-e{self._ids}", "type": event_type, "order_id": order_id}
        body["occurred_at"] = _stamp(at, self.rng)
        body.update(fields)
        self.events.append((at, body))

    def order(self, order_id: str, start: datetime, merchant: str, buyer: str) -> None:
        rng = self.rng
        amount = rng.choice((990, 1990, 5990, 12900, 39900, 259900))
        self.emit(
            start, "order.paid", order_id, merchant_id=merchant, buyer_id=buyer, amount=amount
        )
        if self.mix.every_path and rng.random() < 0.04:
            self.unshipped(order_id, start + self.gap(0.1, 1), merchant, buyer, amount)
            return
        shipped = start + self.gap(1, 30)
        self.emit(
            shipped, "order.shipped", order_id, carrier="SF", waybill=f"SF{rng.randrange(10**9)}"
        )
        delivered = shipped + self.gap(12, 72)
        self.emit(delivered, "order.delivered", order_id)
        if self.mix.every_path and rng.random() < 0.03:  # the merchant refunds unasked
            self.emit(
                delivered + self.gap(1, 100), "aftersale.merchant_refunded", order_id,
                case_id=f"{order_id}-m1", amount=amount, merchant_id=merchant, buyer_id=buyer,
                reason=rng.choice(("logistics", "quality", "other")),
            )  # fmt: skip
            return
        if rng.random() >= self.mix.case_rate:
            if rng.random() < 0.2:
                self.emit(delivered + self.gap(24, 240), "order.completed", order_id)
            return
        at: datetime | None = delivered + self.gap(1, 200)
        for attempt in range(1, 4):
            assert at is not None
            at = self.case(f"{order_id}-c{attempt}", order_id, at, merchant, buyer, amount)
            if at is None or rng.random() > 0.3:
                return
            at += self.gap(1, 48)

    def case(
        self, case_id: str, order_id: str, at: datetime, merchant: str, buyer: str, amount: int
    ) -> datetime | None:
        """One case; returns when it was rejected (the buyer may re-open), else None."""
        rng = self.rng
        kind = "return_refund" if rng.random() < 0.7 else "refund_only"
        if self.mix.every_path and rng.random() < 0.3:
            kind = rng.choice(("exchange", "repair"))
        ev = {"case_id": case_id}
        self.emit(
            at, "aftersale.requested", order_id, **ev, kind=kind, reason=rng.choice(REASONS),
            amount=amount, merchant_id=merchant, buyer_id=buyer,
        )  # fmt: skip
        if rng.random() < self.mix.withdraw_rate:
            self.emit(
                at + self.share("merchant_review", 0.01, 0.5), "aftersale.withdrawn", order_id, **ev
            )
            return None
        if rng.random() < self.mix.escalate_rate:
            self.escalation(at, order_id, ev)
            return None
        review_from, review_left = at, self.policy.deadlines["merchant_review"]
        if self.mix.every_path and rng.random() < 0.15:
            asked = at + self.share("merchant_review", 0.05, 0.4)
            self.emit(asked, "aftersale.evidence_requested", order_id, **ev, note="photos")
            if rng.random() < 0.3:  # the buyer sends nothing: auto_close
                return None
            provided = asked + self.share("buyer_evidence", 0.05, 0.8)
            self.emit(provided, "aftersale.evidence_provided", order_id, **ev)
            # the review resumes with the time it had left (freezes aside)
            review_from, review_left = provided, review_left - (asked - at)
        review_due = review_from + review_left
        answer = rng.random()
        if answer < 0.6:  # in time
            decided = review_from + review_left * rng.uniform(0.02, 0.9)
            if rng.random() < 0.2:
                self.emit(decided, "aftersale.rejected", order_id, **ev, note="not eligible")
                return self.after_rejection(decided, order_id, ev)
            self.emit(decided, "aftersale.approved", order_id, **ev)
        else:
            decided = review_due
            if answer < 0.75:  # late: refused, the deadline decided
                self.emit(review_due + self.gap(0.1, 12), "aftersale.approved", order_id, **ev)
        if kind == "refund_only":
            if decided < review_due:
                self.emit(decided + self.gap(0.1, 24), "aftersale.refunded", order_id, **ev)
            return None
        ship = rng.random()
        if ship < 0.2:  # never ships back: auto_close
            return None
        shipped = decided + self.share(
            "buyer_return", 0.01 if ship < 0.9 else 1.0, 0.9 if ship < 0.9 else 1.1
        )
        self.emit(
            shipped,
            "aftersale.return_shipped",
            order_id,
            **ev,
            carrier="YTO",
            waybill=f"YT{rng.randrange(10**9)}",
        )
        if rng.random() < 0.3:  # merchant never confirms: auto_refund
            return None
        received = shipped + self.share("merchant_receipt", 0.02, 0.8)
        self.emit(received, "aftersale.received", order_id, **ev)
        if kind in ("exchange", "repair"):
            rule = "merchant_reship" if kind == "exchange" else "merchant_repair"
            if rng.random() < 0.75:  # else the merchant never ships it: auto_refund
                self.emit(
                    received + self.share(rule, 0.05, 0.9), "aftersale.reshipped", order_id,
                    **ev, carrier="SF", waybill=f"SF{rng.randrange(10**9)}",
                )  # fmt: skip
            return None
        self.emit(received + self.gap(0.1, 12), "aftersale.refunded", order_id, **ev)
        return None

    def after_rejection(
        self, rejected: datetime, order_id: str, ev: dict[str, str]
    ) -> datetime | None:
        """Where the policy gives the buyer a window to escalate: escalated in it, or not (the
        rejection stands when it ends). Returns when the buyer may open a new case."""
        window = self.policy.deadlines.get("buyer_escalation")
        if not self.mix.every_path or window is None:
            return rejected
        if self.rng.random() < 0.6:
            return rejected + window
        escalated = rejected + window * self.rng.uniform(0.05, 0.8)
        self.emit(escalated, "aftersale.escalated", order_id, **ev)
        decision = self.rng.choice(("refund", "reject"))
        self.emit(
            escalated + self.gap(2, 48), "aftersale.resolved", order_id, **ev, decision=decision
        )
        return None

    def unshipped(
        self, order_id: str, at: datetime, merchant: str, buyer: str, amount: int
    ) -> None:
        """A refund request before shipment: answered in time (and refunded), or not."""
        rng, ev = self.rng, {"case_id": f"{order_id}-c1"}
        self.emit(
            at, "aftersale.requested", order_id, **ev, kind="refund_only",
            reason="mistaken_order", amount=amount, merchant_id=merchant, buyer_id=buyer,
        )  # fmt: skip
        rule = (
            "unshipped_review"
            if "unshipped_review" in self.policy.deadlines
            else ("merchant_review")
        )
        if rng.random() < 0.6:  # else the review lapses: auto_refund
            approved = at + self.share(rule, 0.02, 0.9)
            self.emit(approved, "aftersale.approved", order_id, **ev)
            self.emit(approved + self.gap(0.1, 2), "aftersale.refunded", order_id, **ev)

    def escalation(self, at: datetime, order_id: str, ev: dict[str, str]) -> None:
        escalated = at + self.share("merchant_review", 0.1, 0.8)
        self.emit(escalated, "aftersale.escalated", order_id, **ev)
        resolved = escalated + self.gap(2, 96)
        decision = self.rng.choice(("refund", "reject", "resume"))
        self.emit(resolved, "aftersale.resolved", order_id, **ev, decision=decision)
        if decision == "resume" and self.rng.random() < 0.5:
            self.emit(resolved + self.gap(0.1, 2), "aftersale.approved", order_id, **ev)


def _stamp(at: datetime, rng: random.Random) -> str:
    if rng.random() < 0.5:
        return format_time(at)
    local = at.astimezone(CHINA)
    text = local.isoformat(timespec="milliseconds" if local.microsecond else "seconds")
    return text


def generate(
    orders: int,
    seed: int = 1,
    start: datetime | None = None,
    span: timedelta = timedelta(days=1),
    policy: Policy | None = None,
    scale: float = 1.0,
    mix: Mix = Mix(),
) -> Iterator[bytes]:
    """Yield record values (JSON bytes) in arrival order: by occurred_at, ties in story order."""
    rng = random.Random(seed)
    policy = policy or Policy()
    begin = start or parse_time(DEFAULT_START)
    merchants = [f"m-{i}" for i in range(max(1, orders // 50))]
    pending: list[tuple[datetime, int, bytes]] = []
    seq = 0
    for n in range(orders):
        at = begin + span * (n / max(1, orders))
        while pending and pending[0][0] <= at:
            yield heapq.heappop(pending)[2]
        story = _Story(rng, policy, scale, mix)
        story.order(f"o-{seed}-{n}", at, rng.choice(merchants), f"b-{rng.randrange(orders * 3)}")
        for when, body in story.events:
            for line in _deliveries(rng, body, mix):
                seq += 1
                heapq.heappush(pending, (when, seq, line))
    while pending:
        yield heapq.heappop(pending)[2]


def _deliveries(rng: random.Random, body: dict[str, Any], mix: Mix) -> Iterator[bytes]:
    """The record as produced: sometimes retried, sometimes preceded by a bad record."""
    roll = rng.random()
    if roll < mix.bad_rate:
        yield _bad(rng, body)
    line = orjson.dumps(body)
    yield line
    if rng.random() < mix.retry_rate:
        yield line


def _bad(rng: random.Random, body: dict[str, Any]) -> bytes:
    choice = rng.randrange(5)
    if choice == 0:
        return orjson.dumps(body)[:-7]  # truncated: malformed_json
    bad = dict(body, event_id=body["event_id"] + "-bad")
    if choice == 1:
        del bad["occurred_at"]  # schema_violation
    elif choice == 2:
        bad["type"] = bad["type"].split(".")[0] + ".unknown"  # unknown_type
    elif choice == 3:
        bad["occurred_at"] = "yesterday"  # schema_violation
    else:
        bad.update(type="aftersale.approved", case_id="c-nope")  # unknown_case
    return orjson.dumps(bad)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--orders", type=int, default=1000, help="orders to simulate (default 1000)"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--start", help=f"first order's time (default {DEFAULT_START}; with --live: now)"
    )
    parser.add_argument(
        "--span", default="P1D", help="business time over which orders are paid (default P1D)"
    )
    parser.add_argument(
        "--time-scale", type=float, default=1.0, metavar="S",
        help="compress time S-fold: the story's gaps and the default deadlines are divided by S "
        "(3600 turns hours into seconds); use with --policy-out for the matching policy",
    )  # fmt: skip
    parser.add_argument(
        "--policy",
        metavar="NAME|FILE",
        help="the policy whose deadlines the story aims at: " + POLICY_HELP,
    )
    parser.add_argument("--policy-out", type=Path, help="write the policy in use (YAML) here")
    parser.add_argument("--out", type=Path, help="output file (default: standard output)")
    parser.add_argument(
        "--live",
        action="store_true",
        help="produce into Kafka instead, each record when the wall clock reaches its "
        "occurred_at (the story starts now unless --start is given); settings from AFTERSALE_* "
        "(AFTERSALE_KAFKA_BOOTSTRAP, AFTERSALE_TOPIC_PREFIX)",
    )
    parser.add_argument(
        "--every-path",
        action="store_true",
        help="also the paths beyond the contract's: refund requests before shipment, the "
        "merchant's own refunds, evidence requests, exchanges and repairs, escalations after a "
        "rejection (give a policy with buyer_escalation, such as --policy taobao); off, a seed "
        "gives the stream it always gave",
    )
    parser.add_argument(
        "--bad-rate", type=float, default=Mix().bad_rate, help="share of bad records"
    )
    parser.add_argument(
        "--retry-rate", type=float, default=Mix().retry_rate, help="share of retried records"
    )


def scaled_policy(policy: Policy, scale: float) -> Policy:
    """The policy (every version of it) with every duration divided by `scale`."""
    return replace(
        _scaled_rules(policy, scale),
        order_retention=None if policy.order_retention is None else policy.order_retention / scale,
        versions=tuple(
            replace(
                _scaled_rules(version, scale),
                order_retention=None
                if version.order_retention is None
                else version.order_retention / scale,
            )
            for version in policy.versions
        ),
    )


def _scaled_rules(policy: Policy, scale: float) -> Policy:
    return replace(
        policy,
        deadlines={rule: d / scale for rule, d in policy.deadlines.items()},
        no_reason_window=policy.no_reason_window / scale,
        reminders={rule: tuple(o / scale for o in offs) for rule, offs in policy.reminders.items()},
    )  # (freezes and effective_from are instants, not durations)


def policy_yaml(policy: Policy) -> str:
    """The policy file (durations in seconds) that `load_policy` reads back as `policy`."""
    keep = policy.order_retention
    freezes = "".join(
        f"  - {{from: '{format_time(start)}', to: '{format_time(end)}'}}\n"
        for start, end in policy.freezes
    )
    head = ("" if keep is None else f"order_retention: {format_seconds(keep)}\n") + (
        f"freezes:\n{freezes}" if freezes else ""
    )
    if not policy.versions:
        return _rules_yaml(policy, listed=False) + head
    versions = "".join(_rules_yaml(v, listed=True) for v in (policy, *policy.versions))
    return head + "versions:\n" + versions


def _rules_yaml(policy: Policy, listed: bool) -> str:
    """The rule keys of one version: top-level lines, or an item of `versions:`."""
    deadlines = ", ".join(f"{r}: {format_seconds(d)}" for r, d in policy.deadlines.items())
    reminders = ", ".join(
        f"{r}: [{', '.join(format_seconds(o) for o in offs)}]"
        for r, offs in policy.reminders.items()
    )
    lines = [
        f"deadlines: {{{deadlines}}}",
        f"no_reason_window: {format_seconds(policy.no_reason_window)}",
        f"reminders: {{{reminders}}}",
    ]
    if policy.max_cases_per_order is not None:
        lines.append(f"max_cases_per_order: {policy.max_cases_per_order}")
    if policy.effective_from is not None:
        lines.insert(0, f"effective_from: '{format_time(policy.effective_from)}'")
    if not listed:
        return "".join(line + "\n" for line in lines)
    return "".join(("  - " if n == 0 else "    ") + line + "\n" for n, line in enumerate(lines))


def run(args: argparse.Namespace) -> int:
    """The `aftersale simulate` command."""
    if args.orders < 0 or not (math.isfinite(args.time_scale) and args.time_scale > 0):
        raise ConfigError("--orders must be >= 0 and --time-scale a finite number > 0")
    for name in ("bad_rate", "retry_rate"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise ConfigError(f"--{name.replace('_', '-')} must be between 0 and 1")
    try:
        if args.start is not None:
            start = parse_time(args.start)
        elif args.live:
            start = datetime.now(UTC)
        else:
            start = parse_time(DEFAULT_START)
        span = parse_duration(args.span)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    policy = (
        resolve_policy(args.policy) if args.policy else scaled_policy(Policy(), args.time_scale)
    )
    if args.policy_out:
        args.policy_out.write_text(policy_yaml(policy), encoding="utf-8")
    mix = Mix(bad_rate=args.bad_rate, retry_rate=args.retry_rate, every_path=args.every_path)
    lines = generate(
        args.orders, args.seed, start, span / args.time_scale, policy, args.time_scale, mix
    )
    if args.live:
        return _produce(lines)
    out: BinaryIO
    if args.out is None:
        return _write(lines, sys.stdout.buffer)
    with args.out.open("wb") as out:
        return _write(lines, out)


def _produce(lines: Iterator[bytes]) -> int:
    from streams.live.settings import Settings
    from streams.tools.kafka_call import run_against_kafka
    from streams.tools.live_producer import produce_live

    settings = Settings.from_env()
    produce = produce_live(lines, settings.client_options(), settings.topic_prefix)
    run_against_kafka(settings, produce)
    return 0


def _write(lines: Iterator[bytes], out: BinaryIO) -> int:
    for line in lines:
        out.write(line + b"\n")
    return 0


__all__ = ["UTC", "Mix", "generate", "policy_yaml", "scaled_policy"]
