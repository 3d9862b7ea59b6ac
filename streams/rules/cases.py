"""One after-sale case: its phase, its deadline (running or paused) and its transitions.

Pure: no I/O, no clock. Times come from events (`occurred_at`) or from the deadline itself.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec

from streams.contract.events import Event
from streams.contract.times import LATEST_DUE, Instant, format_time
from streams.errors import InvalidTransition, SchemaViolation
from streams.rules.effects import Action, ActionType, CaseOutcome, Phase, Reminder
from streams.rules.policy import Policy, Rule

OPEN_PHASES: tuple[Phase, ...] = (
    "review",
    "awaiting_return",
    "awaiting_receipt",
    "awaiting_refund",
    "escalated",
    "awaiting_evidence",
    "awaiting_reship",
    "awaiting_escalation",
)
#: Kinds whose goods come back to the merchant (an approval starts the buyer's return).
RETURN_KINDS: frozenset[str] = frozenset({"return_refund", "exchange", "repair"})
#: What a rule's lapse does: its auto-action and the outcome the case closes with. The
#: merchant's rules refund the buyer (the merchant did not act in time); the buyer's close the
#: case; the escalation window's leaves the rejection standing. (One exception, in `expire`:
#: `merchant_review` of a kind whose goods come back auto-approves instead.)
LAPSES: dict[Rule, tuple[ActionType, CaseOutcome]] = {
    "merchant_review": ("auto_refund", "refunded"),
    "buyer_return": ("auto_close", "auto_closed"),
    "merchant_receipt": ("auto_refund", "refunded"),
    "unshipped_review": ("auto_refund", "refunded"),
    "buyer_evidence": ("auto_close", "auto_closed"),
    "merchant_reship": ("auto_refund", "refunded"),
    "merchant_repair": ("auto_refund", "refunded"),
    "buyer_escalation": ("auto_close", "rejected"),
}
#: The merchant's rule after the receipt of the returned goods, by kind (else: none).
_AFTER_RECEIPT: dict[str, Rule] = {"exchange": "merchant_reship", "repair": "merchant_repair"}


class Case(msgspec.Struct, array_like=True, forbid_unknown_fields=True, gc=False):
    """An after-sale case; at most one deadline belongs to it at a time.

    A msgspec Struct, so the state table's codec (`state_codec`) is one C call each way.
    Untracked by the garbage collector (`gc=False`): a case refers only to strings, numbers,
    times and a tuple, never back to anything that could close a reference cycle.
    """

    case_id: str
    order_id: str
    kind: str
    reason: str
    amount: int
    currency: str
    merchant_id: str
    buyer_id: str
    phase: Phase = "review"
    outcome: CaseOutcome | None = None
    #: The deadline of the current phase, running or (while escalated) paused.
    rule: Rule | None = None
    #: When the deadline was (re)started: reminders due before that moment are never sent.
    set_at: Instant | None = None
    #: The deadline instant while it runs; None while paused or when no deadline applies.
    due_at: Instant | None = None
    #: Time left on a paused deadline.
    remaining: timedelta | None = None
    #: Reminder offsets already sent for `rule`.
    reminded: tuple[timedelta, ...] = ()
    #: The phase an escalated case returns to on `resolved: resume`.
    resume_phase: Phase | None = None
    #: When the policy version the case runs under took effect (None: the first version).
    #: (Last in the array: state written before versions existed decodes with None.)
    version_from: Instant | None = None
    #: The merchant's deadline held while the buyer is asked for evidence: its rule, the
    #: deadline time it had left and the reminder offsets already sent. (Appended.)
    held: tuple[Rule, timedelta, tuple[timedelta, ...]] | None = None
    #: The merchant has asked for evidence on this case (once per case: a second round's
    #: reminders would repeat the first's notification_id). (Appended.)
    evidence_asked: bool = False

    def start(self, rule: Rule, at: datetime, policy: Policy) -> None:
        """Start `rule`'s deadline at business time `at`."""
        self.rule, self.set_at, self.reminded, self.remaining = rule, at, (), None
        version = policy.version_of(self.version_from)
        self.due_at = version.deadline_after(at, version.deadlines[rule])

    def stop(self) -> None:
        """No deadline applies any more."""
        self.rule = self.set_at = self.due_at = self.remaining = None
        self.reminded = ()

    def close(self, outcome: CaseOutcome) -> None:
        self.stop()
        self.phase, self.outcome, self.resume_phase, self.held = "closed", outcome, None, None

    def next_due(self, policy: Policy) -> tuple[datetime, timedelta | None] | None:
        """The next thing to fire: (when, reminder offset) or (deadline, None); None if nothing."""
        due, rule, set_at = self.due_at, self.rule, self.set_at
        if due is None or rule is None or set_at is None:
            return None
        reminded, window = self.reminded, due - set_at
        offsets = policy.version_of(self.version_from).reminders[rule]
        for offset in offsets:  # largest first, as `Policy.offsets` gives them
            # (due - offset >= set_at, without computing an instant that may precede year 1)
            if offset not in reminded and offset <= window:
                return due - offset, offset
        return due, None

    def remind(self, offset: timedelta, remind_at: datetime) -> Reminder:
        """Send the reminder at `offset` before the running deadline."""
        assert self.rule is not None
        assert self.due_at is not None
        self.reminded = (*self.reminded, offset)
        return Reminder(
            self.rule,
            offset,
            self.case_id,
            self.order_id,
            self.merchant_id,
            self.buyer_id,
            self.due_at,
            remind_at,
        )

    def expire(self, policy: Policy) -> Action:
        """The running deadline passed with nobody acting: take the auto-action."""
        rule, due = self.rule, self.due_at
        assert rule is not None
        assert due is not None
        kind: ActionType
        if rule == "merchant_review" and self.kind in RETURN_KINDS:
            kind = "auto_approve"
            self.phase = "awaiting_return"
            self.start("buyer_return", due, policy)
        else:
            kind, outcome = LAPSES[rule]
            self.close(outcome)
        return Action(
            kind,
            rule,
            self.case_id,
            self.order_id,
            self.merchant_id,
            self.buyer_id,
            self.kind,
            self.amount,
            self.currency,
            due,
        )

    def apply(self, event: Event, policy: Policy) -> None:
        """Apply an after-sale event other than `requested`; raise InvalidTransition if refused."""
        kind, at, phase = event.type, event.occurred_at, self.phase
        if self.due_at is not None and at >= self.due_at:
            raise InvalidTransition(
                f"{kind} is late: occurred_at is not before the {self.rule} deadline of case "
                f"{self.case_id}, which has decided the case"
            )
        if kind == "aftersale.refunded":
            self.close("refunded")
        elif kind == "aftersale.withdrawn":
            self.close("withdrawn")
        elif kind == "aftersale.approved" and phase == "review":
            if self.kind in RETURN_KINDS:
                self.phase = "awaiting_return"
                self.start("buyer_return", at, policy)
            else:
                self.phase = "awaiting_refund"
                self.stop()
        elif kind == "aftersale.rejected" and phase == "review":
            if "buyer_escalation" in policy.version_of(self.version_from).deadlines:
                self.phase = "awaiting_escalation"
                self.start("buyer_escalation", at, policy)
            else:
                self.close("rejected")
        elif kind == "aftersale.return_shipped" and phase == "awaiting_return":
            self.phase = "awaiting_receipt"
            self.start("merchant_receipt", at, policy)
        elif kind == "aftersale.received" and phase == "awaiting_receipt":
            after = _AFTER_RECEIPT.get(self.kind)
            if after is None:
                self.phase = "awaiting_refund"
                self.stop()
            else:
                self.phase = "awaiting_reship"
                self.start(after, at, policy)
        elif kind == "aftersale.reshipped" and phase == "awaiting_reship":
            self.close("reshipped")
        elif kind == "aftersale.evidence_requested" and phase in ("review", "awaiting_receipt"):
            if self.evidence_asked:
                raise InvalidTransition(
                    f"{kind} is not allowed: the merchant already asked for evidence on case "
                    f"{self.case_id} (once per case)"
                )
            self.evidence_asked = True
            rule, due = self.rule, self.due_at
            assert rule is not None
            assert due is not None  # review and awaiting_receipt always run a deadline
            self.held = (rule, policy.running_between(at, due), self.reminded)
            self.phase = "awaiting_evidence"
            self.start("buyer_evidence", at, policy)
        elif kind == "aftersale.evidence_provided" and phase == "awaiting_evidence":
            assert self.held is not None
            rule, left, reminded = self.held
            self._check_resume(at, left)
            self.phase = "awaiting_receipt" if rule == "merchant_receipt" else "review"
            self.rule, self.set_at, self.reminded, self.held = rule, at, reminded, None
            self.due_at = policy.deadline_after(at, left)
        elif kind == "aftersale.escalated" and phase != "escalated":
            self.resume_phase, self.phase = phase, "escalated"
            if self.due_at is not None:
                # the deadline time left (a freeze between now and the deadline is not left)
                self.remaining = policy.running_between(at, self.due_at)
                self.due_at = None
        elif kind == "aftersale.resolved" and phase == "escalated":
            self._resolve(event.body["decision"], at, policy)
        else:
            raise InvalidTransition(f"{kind} is not allowed for case {self.case_id} in {phase}")

    def _resolve(self, decision: str, at: datetime, policy: Policy) -> None:
        if decision == "refund":
            self.close("refunded")
        elif decision == "reject":
            self.close("rejected")
        else:
            assert self.resume_phase is not None
            remaining = self.remaining
            if remaining is not None:
                self._check_resume(at, remaining)
            self.phase, self.resume_phase = self.resume_phase, None
            if remaining is not None:
                self.set_at, self.remaining = at, None
                self.due_at = policy.deadline_after(at, remaining)

    def _check_resume(self, at: datetime, left: timedelta) -> None:
        """Refuse to resume a deadline with `left` to run at `at` past the latest deadline."""
        if left > LATEST_DUE - at:
            # only a pause stamped long before the deadline started gets here
            raise SchemaViolation(
                f"field 'occurred_at': resuming case {self.case_id} at {format_time(at)} "
                f"with {left} left would put its deadline after {format_time(LATEST_DUE)}"
            )
