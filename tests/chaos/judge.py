"""The campaign's verdict (pure): the worker's committed outputs against replay of the input
in the order the broker appended it.

    actions      by (action_id, type, deadline_at): lost (expected, not seen), extra (seen, not
                 expected), duplicated (an action_id seen more than once), early
                 (fired_at < deadline_at)
    reminders    by notification_id: lost, extra, duplicated; and, seen and expected, the same
                 deadline_at and remind_at
    dead letters a multiset of (error, original_base64): lost, extra; duplicated when refused
                 more often than replay refused it (one input record judged twice)

A lost or extra output (or a reminder that differs) is *raced*, not a failure, only where the
contract allows it ("A record written after the deadline instant races with the firing"): its
case has an input record appended (its LogAppendTime) at or after a deadline instant of that
case (a deadline_at of the case's expected or actual actions or reminders) while the record's
occurred_at is before that instant. For a reminder, its own firing instant counts too (the
remind_at of the case's expected or actual reminders): a record written after it races with
the reminder as one written after a deadline races with the deadline. And a race of a case
explains the differences of the order's later cases (an order has one open case at a time:
whether the earlier case was still open decides whether a later request opens its case or is
refused `case_already_open`). Every other difference is *unexplained*; duplicated and early
outputs are never explained.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from streams.contract.times import parse_time

ORDER_EVENTS = "order-events"
AFTERSALE_EVENTS = "aftersale-events"
#: Equal append times: order-events first (the worker's rank, and replay's file order).
RANK = {ORDER_EVENTS: 0, AFTERSALE_EVENTS: 1}

#: A case: (order_id, case_id) (the engine judges a case_id within its order).
Case = tuple[str, str]


@dataclass(frozen=True, slots=True)
class InputRecord:
    """One record of an input topic as the broker holds it."""

    topic: str  # the contract's name (without the run's prefix)
    partition: int
    offset: int
    #: The record's timestamp: LogAppendTime, the broker's clock when it appended it (ms).
    appended_ms: int
    value: bytes

    @property
    def appended(self) -> datetime:
        return datetime.fromtimestamp(self.appended_ms / 1000, UTC)


def _append_key(r: InputRecord) -> tuple[int, int, int, int]:
    return r.appended_ms, RANK[r.topic], r.partition, r.offset


def append_order(records: Iterable[InputRecord]) -> list[InputRecord]:
    """The records of both input topics in the order the broker appended them: by append time,
    then topic rank (order-events first), then partition and offset (records a producer sent
    in one batch share their append time)."""
    return sorted(records, key=_append_key)


def _object(value: bytes | str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def case_of(body: dict[str, Any] | None) -> Case | None:
    if body is None:
        return None
    order, case = body.get("order_id"), body.get("case_id")
    return (order, case) if isinstance(order, str) and isinstance(case, str) else None


@dataclass(frozen=True, slots=True)
class CaseRecord:
    """An input record of a case, with its business time and its append time."""

    record: InputRecord
    event_type: str
    event_id: str
    occurred_at: datetime

    def describe(self) -> str:
        r = self.record
        return (
            f"{self.event_type} {self.event_id} occurred_at {_t(self.occurred_at)} appended "
            f"{_t(r.appended)} ({r.topic}[{r.partition}]@{r.offset})"
        )


def case_records(records: Iterable[InputRecord]) -> dict[Case, list[CaseRecord]]:
    """The input records of each case that carry a readable occurred_at, in append order."""
    cases: dict[Case, list[CaseRecord]] = {}
    for record in records:
        body = _object(record.value)
        case = case_of(body)
        if case is None or body is None:
            continue
        try:
            occurred = parse_time(body["occurred_at"])
        except (KeyError, TypeError, ValueError):
            continue
        kind, event_id = body.get("type"), body.get("event_id")
        cases.setdefault(case, []).append(CaseRecord(record, str(kind), str(event_id), occurred))
    return cases


@dataclass
class Outputs:
    """The records of the three output topics (or replay's three files)."""

    actions: list[dict[str, Any]] = field(default_factory=list)
    reminders: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> str:
        return (
            f"{len(self.actions)} actions, {len(self.reminders)} reminders, "
            f"{len(self.dead_letters)} dead letters"
        )


@dataclass(frozen=True, slots=True)
class Difference:
    """One output that replay and the worker disagree on."""

    what: str  # "action lost", "action extra", "reminder differs", ...
    item: str  # the id (or error code and original) it concerns
    case: Case | None


@dataclass
class Verdict:
    expected: Outputs
    actual: Outputs
    lost: list[Difference] = field(default_factory=list)
    extra: list[Difference] = field(default_factory=list)
    duplicated: dict[str, int] = field(default_factory=dict)
    #: (action_id, deadline_at, fired_at) of actions fired before their deadline
    early: list[tuple[str, str, str]] = field(default_factory=list)
    #: The cases whose differences the contract's race explains, with the evidence.
    raced: dict[Case, list[str]] = field(default_factory=dict)
    raced_differences: list[Difference] = field(default_factory=list)
    unexplained: list[Difference] = field(default_factory=list)
    #: The input records of each case (for the report of a difference).
    case_records: dict[Case, list[CaseRecord]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not (self.unexplained or self.duplicated or self.early)


def _t(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


#: A firing instant of a case: (when, "deadline" or "reminder").
Instant = tuple[datetime, str]


def firing_instants(outputs: Iterable[Outputs]) -> dict[Case, set[Instant]]:
    """Of each case: the deadline_at of its actions and reminders, and the remind_at of its
    reminders, in any of `outputs`."""
    instants: dict[Case, set[Instant]] = {}
    for out in outputs:
        for record in (*out.actions, *out.reminders):
            case = case_of(record)
            if case is None:
                continue
            found = instants.setdefault(case, set())
            found.add((parse_time(record["deadline_at"]), "deadline"))
            if "remind_at" in record:
                found.add((parse_time(record["remind_at"]), "reminder"))
    return instants


def race_evidence(records: Sequence[CaseRecord], instants: Iterable[Instant]) -> list[str]:
    """Why a case's outcome could differ: each of its records appended at or after one of
    `instants` while stamped before it (empty: no race)."""
    evidence = []
    for instant, kind in sorted(instants):
        for r in records:
            if r.record.appended >= instant > r.occurred_at:
                evidence.append(f"{kind} {_t(instant)}: {r.describe()}")
    return evidence


def judge(records: Sequence[InputRecord], expected: Outputs, actual: Outputs) -> Verdict:
    """Compare; `records` are the input records (any order)."""
    verdict = Verdict(expected, actual)
    by_case = case_records(records)
    instants = firing_instants((expected, actual))
    verdict.case_records = by_case

    def evidence_of(case: Case, kinds: tuple[str, ...]) -> list[str]:
        of_case = [i for i in instants.get(case, ()) if i[1] in kinds]
        return race_evidence(by_case.get(case, []), of_case)

    def earlier_cases(case: Case) -> list[Case]:
        """The order's cases opened before `case` (their first record appended earlier): an
        order has one open case at a time, so their outcome decides whether `case` opens."""
        mine = by_case.get(case)
        first = _append_key(mine[0].record) if mine else None
        return [
            other
            for other, records in by_case.items()
            if other[0] == case[0]
            and other != case
            and (first is None or _append_key(records[0].record) < first)
        ]

    def note(diff: Difference, into: list[Difference]) -> None:
        into.append(diff)
        case = diff.case
        evidence = []
        if case is not None:
            # a reminder races with its own instant too; an action or a dead letter (the case's
            # state) only with a deadline (reminders change no state)
            kinds = ("deadline", "reminder") if diff.what.startswith("reminder") else ("deadline",)
            evidence = evidence_of(case, kinds)
            for earlier in [] if evidence else earlier_cases(case):
                evidence += [
                    f"(earlier case {earlier[1]}) {e}" for e in evidence_of(earlier, ("deadline",))
                ]
        if case is not None and evidence:
            verdict.raced[case] = evidence
            verdict.raced_differences.append(diff)
        else:
            verdict.unexplained.append(diff)

    # actions
    def action_key(a: dict[str, Any]) -> tuple[str, str, str]:
        return a["action_id"], a["type"], a["deadline_at"]

    want = {action_key(a): a for a in expected.actions}
    seen = {action_key(a): a for a in actual.actions}
    for key in sorted(want.keys() - seen.keys()):
        note(Difference("action lost", " ".join(key), case_of(want[key])), verdict.lost)
    for key in sorted(seen.keys() - want.keys()):
        note(Difference("action extra", " ".join(key), case_of(seen[key])), verdict.extra)
    for action_id, n in Counter(a["action_id"] for a in actual.actions).items():
        if n > 1:
            verdict.duplicated[action_id] = n
    for a in actual.actions:
        if parse_time(a["fired_at"]) < parse_time(a["deadline_at"]):
            verdict.early.append((a["action_id"], a["deadline_at"], a["fired_at"]))

    # reminders
    want_r = {r["notification_id"]: r for r in expected.reminders}
    seen_r = {r["notification_id"]: r for r in actual.reminders}
    for nid in sorted(want_r.keys() - seen_r.keys()):
        note(Difference("reminder lost", nid, case_of(want_r[nid])), verdict.lost)
    for nid in sorted(seen_r.keys() - want_r.keys()):
        note(Difference("reminder extra", nid, case_of(seen_r[nid])), verdict.extra)
    for nid in sorted(want_r.keys() & seen_r.keys()):
        w, s = want_r[nid], seen_r[nid]
        if (w["deadline_at"], w["remind_at"]) != (s["deadline_at"], s["remind_at"]):
            item = f"{nid}: expected {w['deadline_at']}/{w['remind_at']}, "
            item += f"seen {s['deadline_at']}/{s['remind_at']}"
            note(Difference("reminder differs", item, case_of(w)), verdict.lost)
    for nid, n in Counter(r["notification_id"] for r in actual.reminders).items():
        if n > 1:
            verdict.duplicated[nid] = n

    # dead letters
    def letter_key(d: dict[str, Any]) -> tuple[str, str]:
        return d["error"], d["original_base64"]

    def letter_case(original_base64: str) -> Case | None:
        return case_of(_object(base64.b64decode(original_base64)))

    want_d = Counter(letter_key(d) for d in expected.dead_letters)
    seen_d = Counter(letter_key(d) for d in actual.dead_letters)
    for (error, original), n in sorted((want_d - seen_d).items()):
        item = f"{error} {base64.b64decode(original)[:160]!r}"
        for _ in range(n):
            note(Difference("dead letter lost", item, letter_case(original)), verdict.lost)
    for (error, original), n in sorted((seen_d - want_d).items()):
        item = f"{error} {base64.b64decode(original)[:160]!r}"
        if want_d[error, original]:
            # refused as replay refused it, but more often: one input record judged twice
            verdict.duplicated[f"dead letter {item}"] = seen_d[error, original]
            continue
        for _ in range(n):
            note(Difference("dead letter extra", item, letter_case(original)), verdict.extra)
    return verdict
