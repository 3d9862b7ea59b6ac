"""Property tests: the engine and replay over random event sequences (see `strategies.py`).

The engine is driven exactly as the contract's Replay section says: the clock is the largest
`occurred_at` of the records that passed validation; before each record is applied everything
due at or before the clock fires (`engine.advance(clock)`), then `engine.apply(event, clock)`;
after the last record the clock advances to `until`. Every effect is recorded with the clock
at which it was produced, and the invariants of the contract are checked over that log.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from streams.contract.events import Event, decode
from streams.contract.times import parse_time
from streams.errors import InputError
from streams.rules.cases import Case
from streams.rules.effects import Action, Effect, Reminder
from streams.rules.engine import Engine
from streams.rules.policy import Policy, policy_from_mapping
from streams.tools.replay import ACTIONS_FILE, DEADLETTER_FILE, NOTIFICATIONS_FILE, replay
from streams.tools.summary import Summary
from tests.unit.factories import T0
from tests.unit.strategies import (
    NEW_CASE,
    Scenario,
    render,
    scenarios,
    single_case_scenarios,
)

H = timedelta(hours=1)
PROPS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: The phase each rule's deadline decides, as the event types that act in that phase.
DECIDED_BY: dict[str, frozenset[str]] = {
    "merchant_review": frozenset({"aftersale.approved", "aftersale.rejected"}),
    "buyer_return": frozenset({"aftersale.return_shipped"}),
    "merchant_receipt": frozenset({"aftersale.received"}),
    "unshipped_review": frozenset({"aftersale.approved", "aftersale.rejected"}),
    "buyer_evidence": frozenset({"aftersale.evidence_provided"}),
    "merchant_reship": frozenset({"aftersale.reshipped"}),
    "merchant_repair": frozenset({"aftersale.reshipped"}),
    "buyer_escalation": frozenset({"aftersale.escalated"}),
}
DEADLINE_PHASES = (
    "review",
    "awaiting_return",
    "awaiting_receipt",
    "awaiting_evidence",
    "awaiting_reship",
    "awaiting_escalation",
)
#: Kinds whose goods come back (an approval starts buyer_return), and the merchant's rule
#: after the receipt of an exchange's or a repair's goods.
RETURN_KINDS = ("return_refund", "exchange", "repair")
AFTER_RECEIPT = {"exchange": "merchant_reship", "repair": "merchant_repair"}

CaseKey = tuple[str, str]


# --------------------------------------------------------------------------- the driver


@dataclass(slots=True)
class Step:
    """One record of the input and what the engine did with it."""

    value: dict[str, Any]
    event: Event | None
    #: "applied", "duplicate", "rejected" (by the engine) or "invalid" (by validation).
    verdict: str
    code: str | None
    clock: datetime | None
    #: Effects fired before the record was applied (by advance, then by apply), then its own.
    effects: list[Effect]


@dataclass(slots=True)
class Run:
    steps: list[Step]
    end: datetime | None
    #: Effects fired by the final advance to `end`.
    final: list[Effect]
    engine: Engine

    def timeline(self) -> Iterator[tuple[datetime | None, Effect]]:
        """Every effect with the clock at which it was produced, in order."""
        for step in self.steps:
            for effect in step.effects:
                yield step.clock, effect
        for effect in self.final:
            yield self.end, effect

    def actions(self) -> list[Action]:
        return [e for _, e in self.timeline() if isinstance(e, Action)]

    def reminders(self) -> list[Reminder]:
        return [e for _, e in self.timeline() if isinstance(e, Reminder)]


def encode(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record)


def drive(
    scenario: Scenario,
    after_step: Callable[[Engine], None] | None = None,
    policy: Policy | None = None,
) -> Run:
    """Run the engine over the scenario the way replay does; record everything."""
    engine = Engine(scenario.policy if policy is None else policy)
    steps: list[Step] = []
    clock: datetime | None = None
    for value in scenario.records:
        try:
            event = decode(encode(value))
        except InputError as error:
            steps.append(Step(value, None, "invalid", error.code, clock, []))
            continue
        clock = event.occurred_at if clock is None else max(clock, event.occurred_at)
        effects = engine.advance(clock)
        result = engine.apply(event, clock)
        effects.extend(result.effects)
        code = None if result.error is None else result.error.code
        steps.append(Step(value, event, result.verdict, code, clock, effects))
        if after_step is not None:
            after_step(engine)
    until = scenario.until
    end = until if clock is None or (until is not None and until > clock) else clock
    final = [] if end is None else engine.advance(end)
    if after_step is not None:
        after_step(engine)
    return Run(steps, end, final, engine)


@dataclass(frozen=True, slots=True)
class Output:
    actions: bytes
    notifications: bytes
    deadletter: bytes
    summary: Summary

    def dead_letter_codes(self) -> list[str]:
        return [orjson.loads(line)["error"] for line in self.deadletter.splitlines()]


@contextmanager
def _tmpdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="props-") as name:
        yield Path(name)


def run_replay(records: list[dict[str, Any]], policy: Policy, until: datetime | None) -> Output:
    """`streams.tools.replay.replay` over the records written to a file in a fresh folder."""
    with _tmpdir() as tmp:
        source = tmp / "events.jsonl"
        source.write_bytes(b"".join(encode(r) + b"\n" for r in records))
        out = tmp / "out"
        summary = replay(source, out, policy, until=until)
        return Output(
            (out / ACTIONS_FILE).read_bytes(),
            (out / NOTIFICATIONS_FILE).read_bytes(),
            (out / DEADLETTER_FILE).read_bytes(),
            summary,
        )


def key_of(event: Event) -> CaseKey:
    return event.order_id, event.case_id


# --------------------------------------------------------------------------- a case tracker


@dataclass(slots=True)
class Tracked:
    """What the contract says about one case, followed from the log (not from the engine)."""

    kind: str
    requested: Event
    rule: str | None = "merchant_review"
    #: The moment the running deadline was set: start, auto-approval instant or resume.
    set_at: datetime | None = None
    escalated: bool = False
    closed: bool = False
    #: The merchant's rule held while the buyer is asked for evidence.
    held: str | None = None


def follow(
    run: Run,
    on_effect: Callable[[datetime | None, Effect, dict[CaseKey, Tracked]], None] | None = None,
) -> dict[CaseKey, Tracked]:
    """Replay the log into per-case trackers; `on_effect` sees each effect before it counts."""
    cases: dict[CaseKey, Tracked] = {}

    def effect_seen(clock: datetime | None, effect: Effect) -> None:
        if on_effect is not None:
            on_effect(clock, effect, cases)
        if isinstance(effect, Action):
            case = cases[(effect.order_id, effect.case_id)]
            if effect.type == "auto_approve":
                case.rule, case.set_at = "buyer_return", effect.deadline_at
            else:
                case.rule, case.closed = None, True

    shipped: set[str] = set()
    policy = run.engine.policy
    for step in run.steps:
        for effect in step.effects:
            effect_seen(step.clock, effect)
        event = step.event
        if event is not None and step.verdict == "applied" and event.type == "order.shipped":
            shipped.add(event.order_id)
        if event is None or step.verdict != "applied" or not event.type.startswith("aftersale."):
            continue
        kind, at = event.type, event.occurred_at
        if kind == "aftersale.merchant_refunded":  # a case opened and closed at once
            cases[key_of(event)] = Tracked("refund_only", event, rule=None, closed=True)
            continue
        if kind == "aftersale.requested":
            tracked = cases[key_of(event)] = Tracked(event.body["kind"], event, set_at=at)
            # a refund-only request on an order not shipped: the unshipped review, if any
            unshipped = "unshipped_review" in policy.version_at(at).deadlines
            if tracked.kind == "refund_only" and event.order_id not in shipped and unshipped:
                tracked.rule = "unshipped_review"
            continue
        case = cases[key_of(event)]
        version = policy.version_at(case.requested.occurred_at)
        if kind == "aftersale.approved":
            case.rule = "buyer_return" if case.kind in RETURN_KINDS else None
            case.set_at = at
        elif kind == "aftersale.return_shipped":
            case.rule, case.set_at = "merchant_receipt", at
        elif kind == "aftersale.received":
            case.rule, case.set_at = AFTER_RECEIPT.get(case.kind), at
        elif kind == "aftersale.evidence_requested":
            case.held, case.rule, case.set_at = case.rule, "buyer_evidence", at
        elif kind == "aftersale.evidence_provided":
            case.rule, case.held, case.set_at = case.held, None, at
        elif kind == "aftersale.rejected" and "buyer_escalation" in version.deadlines:
            case.rule, case.set_at = "buyer_escalation", at
        elif kind == "aftersale.escalated":
            case.escalated = True
        elif kind == "aftersale.resolved":
            case.escalated = False
            if event.body["decision"] == "resume":
                case.set_at = at
            else:
                case.rule, case.closed = None, True
        else:  # rejected, refunded, withdrawn
            case.rule, case.closed, case.escalated = None, True, False
    for effect in run.final:
        effect_seen(run.end, effect)
    return cases


# --------------------------------------------------------------------------- invariants


@PROPS
@given(scenarios())
def test_nothing_fires_before_its_time(scenario: Scenario) -> None:
    """1. Actions and reminders fire at or after their instant, reminders inside the window."""
    policy = scenario.policy

    def check(clock: datetime | None, effect: Effect, cases: dict[CaseKey, Tracked]) -> None:
        assert clock is not None
        if isinstance(effect, Action):
            assert effect.deadline_at <= clock, effect
        elif isinstance(effect, Reminder):
            assert effect.remind_at <= clock, effect
            assert effect.remind_at < effect.deadline_at, effect
            case = cases[(effect.order_id, effect.case_id)]
            # an offset of the policy version in force when the case was requested
            version = policy.version_at(case.requested.occurred_at)
            assert effect.offset in version.offsets(effect.rule)
            assert effect.remind_at == effect.deadline_at - effect.offset
            assert case.rule == effect.rule, (effect, case)
            assert case.set_at is not None
            assert effect.remind_at >= case.set_at, (effect, case.set_at)

    follow(drive(scenario), check)


@PROPS
@given(scenarios())
def test_each_action_and_notification_id_once(scenario: Scenario) -> None:
    """2. action_id and notification_id are unique in the output."""
    run = drive(scenario)
    actions = Counter(a.action_id for a in run.actions())
    notes = Counter(r.notification_id for r in run.reminders())
    assert [k for k, n in actions.items() if n > 1] == []
    assert [k for k, n in notes.items() if n > 1] == []
    out = run_replay(scenario.records, scenario.policy, scenario.until)
    ids = [orjson.loads(line)["action_id"] for line in out.actions.splitlines()]
    assert len(ids) == len(set(ids))
    nids = [orjson.loads(line)["notification_id"] for line in out.notifications.splitlines()]
    assert len(nids) == len(set(nids))


def check_store(engine: Engine) -> None:
    for order_id, state in engine.store.items():
        case: Case | None = state.open
        if case is not None:
            assert case.phase != "closed", (order_id, case)
            assert case.outcome is None
            assert case.case_id not in state.closed, (order_id, case.case_id)
            assert case.order_id == order_id
            if case.due_at is not None:
                assert case.rule is not None, case
                assert case.phase in DEADLINE_PHASES, case
            if case.phase == "escalated":
                assert case.due_at is None, case
        outcomes = {"rejected", "refunded", "withdrawn", "auto_closed", "reshipped"}
        assert set(state.closed.values()) <= outcomes


@PROPS
@given(scenarios())
def test_one_open_case_per_order_and_one_deadline_per_case(scenario: Scenario) -> None:
    """3. The store stays consistent after every step."""
    drive(scenario, after_step=check_store)


@PROPS
@given(scenarios())
def test_paused_deadlines_never_fire(scenario: Scenario) -> None:
    """4. While a case is escalated, nothing fires for it."""

    def check(clock: datetime | None, effect: Effect, cases: dict[CaseKey, Tracked]) -> None:
        if isinstance(effect, Action | Reminder):
            case = cases[(effect.order_id, effect.case_id)]
            assert not case.escalated, effect
            assert not case.closed, effect

    follow(drive(scenario), check)


@PROPS
@given(scenarios())
def test_replay_is_deterministic(scenario: Scenario) -> None:
    """5. The same input gives byte-identical output."""
    first = run_replay(scenario.records, scenario.policy, scenario.until)
    second = run_replay(scenario.records, scenario.policy, scenario.until)
    assert first.actions == second.actions
    assert first.notifications == second.notifications
    assert first.deadletter == second.deadletter
    assert first.summary.as_dict() == second.summary.as_dict()


def records_of(effects: list[Effect]) -> tuple[bytes, bytes]:
    actions = b"".join(
        orjson.dumps(e.record(e.deadline_at)) + b"\n" for e in effects if isinstance(e, Action)
    )
    notes = b"".join(orjson.dumps(e.record()) + b"\n" for e in effects if isinstance(e, Reminder))
    return actions, notes


def _requested(n: int, order: int, hours: float) -> dict[str, Any]:
    return {
        "event_id": f"e-{n}",
        "type": "aftersale.requested",
        "order_id": f"o-{order}",
        "case_id": f"c-{order}",
        "occurred_at": render(T0 + timedelta(hours=hours), "Z"),
        "kind": "refund_only",
        "reason": "quality",
        "amount": 1,
        "merchant_id": "m",
        "buyer_id": "b",
    }


def _paid(n: int, order: int, hours: float) -> dict[str, Any]:
    return {
        "event_id": f"e-{n}",
        "type": "order.paid",
        "order_id": f"o-{order}",
        "occurred_at": render(T0 + timedelta(hours=hours), "Z"),
        "merchant_id": "m",
        "buyer_id": "b",
        "amount": 1,
    }


#: A deadline that falls due at or before the clock while the clock does not move (a record
#: stamped in the past opened its case) must still fire before the next record is applied.
BACKDATED_DEADLINE = Scenario(
    policy_from_mapping(
        {"deadlines": {"merchant_review": "PT1H"}, "reminders": {"merchant_review": []}}
    ),
    [_paid(1, 1, 3), _requested(2, 1, 0), _requested(3, 2, 1), _paid(4, 2, 3)],
    None,
)
#: The same with a reminder due at the very instant its deadline was set (offset == deadline).
REMINDER_AT_SET_INSTANT = Scenario(
    policy_from_mapping(
        {"deadlines": {"merchant_review": "PT1H"}, "reminders": {"merchant_review": ["PT1H"]}}
    ),
    [_requested(1, 2, 0), _requested(2, 1, -0.5)],
    None,
)


def test_replay_fires_a_backdated_deadline_before_the_next_record() -> None:
    """Contract, Replay: before a record is applied, everything due at or before the clock fires.

    Record 2 (clock 13:00) opens c-1 with its deadline at 11:00, already due. Record 3 must
    therefore be applied after c-1's auto_refund, and record 4's firing of c-2 (12:00) comes
    after it: actions.jsonl lists c-1 then c-2, in deadline order.
    """
    out = run_replay(BACKDATED_DEADLINE.records, BACKDATED_DEADLINE.policy, None)
    fired = [orjson.loads(line) for line in out.actions.splitlines()]
    assert [(a["case_id"], a["deadline_at"]) for a in fired] == [
        ("c-1", "2026-11-01T11:00:00Z"),
        ("c-2", "2026-11-01T12:00:00Z"),
    ]


@PROPS
@example(BACKDATED_DEADLINE)
@example(REMINDER_AT_SET_INSTANT)
@given(scenarios())
def test_replay_fires_everything_due_before_each_record(scenario: Scenario) -> None:
    """5b. Replay's output is the driver's (which advances the clock before every record)."""
    run = drive(scenario)
    out = run_replay(scenario.records, scenario.policy, scenario.until)
    actions, notes = records_of([e for _, e in run.timeline()])
    assert out.actions == actions
    assert out.notifications == notes
    assert out.dead_letter_codes() == [s.code for s in run.steps if s.code is not None]


@PROPS
@given(scenarios(), st.data())
def test_time_zone_independence(scenario: Scenario, data: st.DataObject) -> None:
    """6. Rendering the same instants in other offsets changes nothing but dead-letter text."""
    rerendered: list[dict[str, Any]] = []
    for value in scenario.records:
        try:
            event = decode(encode(value))
        except InputError:
            rerendered.append(value)
            continue
        offset = data.draw(st.sampled_from(("Z", "+08:00", "-05:00")))
        rerendered.append({**value, "occurred_at": render(event.occurred_at, offset)})
    first = run_replay(scenario.records, scenario.policy, scenario.until)
    second = run_replay(rerendered, scenario.policy, scenario.until)
    assert first.actions == second.actions
    assert first.notifications == second.notifications
    assert first.dead_letter_codes() == second.dead_letter_codes()


RETRY_OF_BACKDATED = Scenario(
    BACKDATED_DEADLINE.policy, [_paid(1, 3, 2), _requested(2, 1, 0), _requested(3, 2, 0)], None
)


@PROPS
@example(RETRY_OF_BACKDATED, 2)
@given(scenarios(), st.integers(0, 10**6))
def test_a_retry_right_after_its_original_changes_nothing(scenario: Scenario, pick: int) -> None:
    """7. A producer retry is counted as a duplicate and changes no output."""
    index = pick % len(scenario.records)
    records = list(scenario.records)
    records.insert(index + 1, dict(records[index]))
    run = drive(scenario)
    original = run.steps[index]
    first = run_replay(scenario.records, scenario.policy, scenario.until)
    second = run_replay(records, scenario.policy, scenario.until)
    assert first.actions == second.actions
    assert first.notifications == second.notifications
    if original.verdict in ("applied", "duplicate"):
        assert second.summary.duplicates == first.summary.duplicates + 1
        assert second.deadletter == first.deadletter
    else:
        assert second.summary.duplicates == first.summary.duplicates
        codes = first.dead_letter_codes()
        assert original.code is not None
        assert Counter(second.dead_letter_codes()) == Counter([*codes, original.code])


def test_a_retry_of_a_backdated_request_changes_no_output() -> None:
    """7, minimal: two deadlines already due but not fired; a retry must not reorder them."""
    records = RETRY_OF_BACKDATED.records
    first = run_replay(records, RETRY_OF_BACKDATED.policy, None)
    second = run_replay([*records, dict(records[2])], RETRY_OF_BACKDATED.policy, None)
    assert second.summary.duplicates == 1
    assert first.actions == second.actions


@PROPS
@given(scenarios())
def test_actions_fire_at_their_deadline_with_the_case_amount(scenario: Scenario) -> None:
    """8. fired_at == deadline_at in replay; amount/currency are the requested event's."""
    run = drive(scenario)
    cases = follow(run)
    out = run_replay(scenario.records, scenario.policy, scenario.until)
    for line in out.actions.splitlines():
        action = orjson.loads(line)
        assert action["fired_at"] == action["deadline_at"]
        requested = cases[(action["order_id"], action["case_id"])].requested.body
        assert action["amount"] == requested["amount"]
        assert action["currency"] == requested.get("currency", "CNY")
        assert action["kind"] == requested["kind"]
        assert (action["merchant_id"], action["buyer_id"]) == (
            requested["merchant_id"],
            requested["buyer_id"],
        )


@PROPS
@given(scenarios())
def test_late_events_are_refused(scenario: Scenario) -> None:
    """9. After a deadline decided a case, events aimed at the decided phase are refused."""
    run = drive(scenario)
    fired: dict[CaseKey, list[Action]] = {}
    for step in run.steps:
        for effect in step.effects:
            if isinstance(effect, Action):
                fired.setdefault((effect.order_id, effect.case_id), []).append(effect)
        event = step.event
        if event is None or not event.type.startswith("aftersale."):
            continue
        if event.type in NEW_CASE or step.verdict == "duplicate":
            continue  # (a new case is judged on the order, not on a decided one)
        for action in fired.get(key_of(event), []):
            if event.occurred_at >= action.deadline_at and event.type in DECIDED_BY[action.rule]:
                assert (step.verdict, step.code) == ("rejected", "invalid_transition"), (
                    step.value,
                    action,
                )
            if action.type != "auto_approve":  # the deadline closed the case
                assert (step.verdict, step.code) == ("rejected", "invalid_transition"), (
                    step.value,
                    action,
                )


# --------------------------------------------------------------------------- reference model


HALF_HOUR = timedelta(minutes=30)


@dataclass(slots=True)
class Model:
    """One order, one case: the contract's phase table and deadline table, nothing more."""

    policy: Policy
    #: The policy version the case runs under: the one in force at its request.
    version: Policy = field(default_factory=Policy)
    phase: str | None = None  # None: not requested yet
    kind: str = ""
    outcome: str | None = None
    rule: str | None = None
    due: datetime | None = None
    remaining: timedelta | None = None
    came_from: str | None = None
    #: The merchant's rule and deadline time held while the buyer is asked for evidence.
    held: tuple[str, timedelta] | None = None
    evidence_asked: bool = False
    delivered: datetime | None = None
    shipped: bool = False
    applied: set[str] = field(default_factory=set)
    actions: list[tuple[str, str, datetime]] = field(default_factory=list)

    def deadline(self, rule: str, at: datetime) -> None:
        self.rule = rule
        self.due = self.after(at, self.version.deadlines[rule])  # type: ignore[index]

    # Deadline time, counted half hour by half hour (every instant in a scenario is on one):
    # a half hour within a freeze does not count, and a deadline never falls within one.
    def frozen(self, at: datetime) -> bool:
        return any(start <= at < end for start, end in self.policy.freezes)

    def after(self, at: datetime, running: timedelta) -> datetime:
        while running > timedelta(0):
            if not self.frozen(at):
                running -= HALF_HOUR
            at += HALF_HOUR
        while self.frozen(at):
            at += HALF_HOUR
        return at

    def running(self, at: datetime, due: datetime) -> timedelta:
        left = timedelta(0)
        while at < due:
            if not self.frozen(at):
                left += HALF_HOUR
            at += HALF_HOUR
        return left

    def no_deadline(self) -> None:
        self.rule = self.due = self.remaining = None

    def close(self, outcome: str) -> None:
        self.phase, self.outcome, self.held = "closed", outcome, None
        self.no_deadline()

    def fire(self, clock: datetime) -> None:
        while self.due is not None and self.due <= clock:
            due, rule = self.due, self.rule
            assert rule is not None
            if rule == "merchant_review" and self.kind in RETURN_KINDS:
                self.actions.append(("auto_approve", rule, due))
                self.phase = "awaiting_return"
                self.deadline("buyer_return", due)
            elif rule in ("buyer_return", "buyer_evidence"):
                self.actions.append(("auto_close", rule, due))
                self.close("auto_closed")
            elif rule == "buyer_escalation":
                self.actions.append(("auto_close", rule, due))
                self.close("rejected")
            else:  # the merchant's rules
                self.actions.append(("auto_refund", rule, due))
                self.close("refunded")

    def apply(self, event: Event) -> str:
        """ "applied", "duplicate" or a dead-letter code."""
        if event.event_id in self.applied:
            return "duplicate"
        code = self._judge(event)
        if code == "applied":
            self.applied.add(event.event_id)
        return code

    def _judge(self, event: Event) -> str:
        kind, at, body = event.type, event.occurred_at, event.body
        if kind == "order.delivered":
            self.delivered = at if self.delivered is None else max(self.delivered, at)
        if kind == "order.shipped":
            self.shipped = True
        if kind.startswith("order."):
            return "applied"
        if kind == "aftersale.merchant_refunded":
            if self.phase is not None:  # a case is open, or its id was used
                return "case_already_open"
            self.close("refunded")
            return "applied"
        if kind == "aftersale.requested":
            if self.phase is not None:
                return "case_already_open"
            self.version = self.policy.version_at(at)
            window = self.version.no_reason_window
            if (
                body["reason"] == "no_reason"
                and self.delivered is not None
                and at >= self.delivered + window
            ):
                return "not_eligible"
            self.phase, self.kind = "review", body["kind"]
            unshipped = "unshipped_review" in self.version.deadlines
            if self.kind == "refund_only" and not self.shipped and unshipped:
                self.deadline("unshipped_review", at)
            else:
                self.deadline("merchant_review", at)
            return "applied"
        if self.phase is None:
            return "unknown_case"
        if self.phase == "closed" or (self.due is not None and at >= self.due):
            return "invalid_transition"
        phase = self.phase
        if kind == "aftersale.refunded":
            self.close("refunded")
        elif kind == "aftersale.withdrawn":
            self.close("withdrawn")
        elif kind == "aftersale.approved" and phase == "review":
            if self.kind in RETURN_KINDS:
                self.phase = "awaiting_return"
                self.deadline("buyer_return", at)
            else:
                self.phase = "awaiting_refund"
                self.no_deadline()
        elif kind == "aftersale.rejected" and phase == "review":
            if "buyer_escalation" in self.version.deadlines:
                self.phase = "awaiting_escalation"
                self.deadline("buyer_escalation", at)
            else:
                self.close("rejected")
        elif kind == "aftersale.return_shipped" and phase == "awaiting_return":
            self.phase = "awaiting_receipt"
            self.deadline("merchant_receipt", at)
        elif kind == "aftersale.received" and phase == "awaiting_receipt":
            if self.kind in AFTER_RECEIPT:
                self.phase = "awaiting_reship"
                self.deadline(AFTER_RECEIPT[self.kind], at)
            else:
                self.phase = "awaiting_refund"
                self.no_deadline()
        elif kind == "aftersale.reshipped" and phase == "awaiting_reship":
            self.close("reshipped")
        elif (
            kind == "aftersale.evidence_requested"
            and phase in ("review", "awaiting_receipt")
            and not self.evidence_asked  # once per case
        ):
            self.evidence_asked = True
            assert self.rule is not None
            assert self.due is not None
            self.held = (self.rule, self.running(at, self.due))
            self.phase = "awaiting_evidence"
            self.deadline("buyer_evidence", at)
        elif kind == "aftersale.evidence_provided" and phase == "awaiting_evidence":
            assert self.held is not None
            rule, left = self.held
            self.phase = "awaiting_receipt" if rule == "merchant_receipt" else "review"
            self.rule, self.due, self.held = rule, self.after(at, left), None
        elif kind == "aftersale.escalated" and phase != "escalated":
            self.came_from, self.phase = phase, "escalated"
            if self.due is not None:
                self.remaining, self.due = self.running(at, self.due), None
        elif kind == "aftersale.resolved" and phase == "escalated":
            decision = body["decision"]
            if decision == "refund":
                self.close("refunded")
            elif decision == "reject":
                self.close("rejected")
            else:
                self.phase = self.came_from
                if self.remaining is not None:
                    self.due, self.remaining = self.after(at, self.remaining), None
        else:
            return "invalid_transition"
        return "applied"


@PROPS
@given(single_case_scenarios())
def test_single_case_matches_the_reference_model(scenario: Scenario) -> None:
    """10. One case: outcome, phase, deadline, actions and verdicts agree with the model."""
    run = drive(scenario)
    model = Model(scenario.policy)
    clock: datetime | None = None
    for step in run.steps:
        if step.event is None:
            assert step.verdict == "invalid"
            continue
        clock = step.event.occurred_at if clock is None else max(clock, step.event.occurred_at)
        model.fire(clock)
        verdict = model.apply(step.event)
        got = step.code if step.verdict == "rejected" else step.verdict
        assert got == verdict, (step.value, model)
    if run.end is not None:
        model.fire(run.end)
    assert [(a.type, a.rule, a.deadline_at) for a in run.actions()] == model.actions
    (state,) = run.engine.store.values() or [None]
    if state is None:
        assert model.phase is None
        return
    if state.open is not None:
        case = state.open
        assert (case.phase, case.due_at, case.remaining) == (
            model.phase,
            model.due,
            model.remaining,
        )
        if model.due is not None:
            assert case.rule == model.rule
    elif state.closed:
        assert list(state.closed.values()) == [model.outcome]
        assert model.phase == "closed"
    else:
        assert model.phase is None


# --------------------------------------------------------------------------- examples


def at(hours: float) -> str:
    return render(T0 + timedelta(hours=hours), "Z")


def rec(n: int, kind: str, hours: float, **fields: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "event_id": f"e-{n}",
        "type": kind,
        "order_id": "o-1",
        "occurred_at": at(hours),
    }
    if kind.startswith("aftersale."):
        value["case_id"] = "c-1"
    if kind == "aftersale.requested":
        value.update(
            kind="return_refund", reason="quality", amount=5990, merchant_id="m", buyer_id="b"
        )
    value.update(fields)
    return value


POLICY_48H = policy_from_mapping(
    {
        "deadlines": {"merchant_review": "PT48H", "buyer_return": "P10D"},
        "reminders": {"merchant_review": ["PT24H", "PT2H"], "buyer_return": []},
    }
)


def scenario_of(records: list[dict[str, Any]], until_hours: float | None) -> Scenario:
    until = None if until_hours is None else T0 + timedelta(hours=until_hours)
    return Scenario(POLICY_48H, records, until)


def test_escalation_pauses_and_resume_keeps_the_time_left() -> None:
    records = [
        rec(1, "aftersale.requested", 0),
        rec(2, "aftersale.escalated", 10),  # 38 h left
        rec(3, "aftersale.resolved", 100, decision="resume"),
    ]
    run = drive(scenario_of(records, 400))
    (approve, close) = run.actions()
    assert (approve.type, approve.deadline_at) == ("auto_approve", T0 + 138 * H)
    assert (close.type, close.deadline_at) == ("auto_close", T0 + 138 * H + 240 * H)
    # the 24 h reminder (due at 24 h) was paused away; after the resume both come, in the window
    assert [(r.notification_id, r.remind_at) for r in run.reminders()] == [
        ("c-1:merchant_review:86400", T0 + 114 * H),
        ("c-1:merchant_review:7200", T0 + 136 * H),
    ]


def test_reminders_after_resume_do_not_repeat() -> None:
    records = [
        rec(1, "aftersale.requested", 0),
        rec(2, "order.paid", 30, merchant_id="m", buyer_id="b", amount=1),  # 24 h reminder
        rec(3, "aftersale.escalated", 20),  # stamped before the reminder: 28 h left
        rec(4, "aftersale.resolved", 40, decision="resume"),  # deadline now 68 h
    ]
    run = drive(scenario_of(records, 60))
    assert [(r.notification_id, r.remind_at, r.deadline_at) for r in run.reminders()] == [
        ("c-1:merchant_review:86400", T0 + 24 * H, T0 + 48 * H),
    ]
    end = drive(scenario_of(records, 100))
    assert [(r.notification_id, r.remind_at, r.deadline_at) for r in end.reminders()] == [
        ("c-1:merchant_review:86400", T0 + 24 * H, T0 + 48 * H),
        ("c-1:merchant_review:7200", T0 + 66 * H, T0 + 68 * H),
    ]
    assert [(a.type, a.deadline_at) for a in end.actions()] == [("auto_approve", T0 + 68 * H)]


def test_auto_approve_starts_buyer_return_at_the_deadline_instant() -> None:
    records = [rec(1, "aftersale.requested", 0)]
    run = drive(scenario_of(records, 48 + 240))
    assert [(a.type, a.deadline_at) for a in run.actions()] == [
        ("auto_approve", T0 + 48 * H),
        ("auto_close", T0 + 288 * H),
    ]
    short = drive(scenario_of(records, 48 + 240 - 1 / 3600))
    assert [a.type for a in short.actions()] == ["auto_approve"]


def test_waybill_an_hour_after_auto_approval_is_applied() -> None:
    records = [
        rec(1, "aftersale.requested", 0),
        rec(2, "aftersale.return_shipped", 49, carrier="YTO", waybill="YT1"),
    ]
    run = drive(scenario_of(records, None))
    assert [s.verdict for s in run.steps] == ["applied", "applied"]
    assert [a.type for a in run.actions()] == ["auto_approve"]
    (state,) = run.engine.store.values()
    assert state.open is not None
    assert (state.open.phase, state.open.due_at) == ("awaiting_receipt", T0 + 49 * H + 240 * H)
    # live: the timer has not ticked; apply fires the order's due deadline first
    engine = Engine(POLICY_48H)
    first = decode(encode(records[0]))
    waybill = decode(encode(records[1]))
    assert engine.apply(first, first.occurred_at).verdict == "applied"
    result = engine.apply(waybill, waybill.occurred_at)
    assert result.verdict == "applied"
    assert [e.type for e in result.effects if isinstance(e, Action)] == ["auto_approve"]


@example(hours=48.0, outcome="rejected")
@example(hours=48 - 1 / 3600, outcome="applied")
@given(st.floats(0, 60).map(lambda h: round(h * 2) / 2), st.just(""))
@settings(max_examples=20, deadline=None)
def test_approval_at_or_after_the_deadline_is_late(hours: float, outcome: str) -> None:
    records = [rec(1, "aftersale.requested", 0), rec(2, "aftersale.approved", hours)]
    run = drive(scenario_of(records, None))
    expected = "applied" if hours < 48 else "rejected"
    assert outcome in ("", expected)
    assert run.steps[1].verdict == expected
    if expected == "rejected":
        assert run.steps[1].code == "invalid_transition"
        assert [a.type for a in run.actions()] == ["auto_approve"]
    else:
        assert run.actions() == []


def test_render_keeps_the_instant() -> None:
    when = T0 + 7 * H
    assert {parse_time(render(when, o)) for o in ("Z", "+08:00", "-05:00")} == {when}
    assert render(T0, "+08:00") == "2026-11-01T18:00:00+08:00"
    assert T0.tzinfo is UTC
