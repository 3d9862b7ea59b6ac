"""What one batch of a partition's work counts for the metrics, kept until it commits (pure).

A count must move only when the partition's transaction commits: work redone after a crash
or a rebalance is then counted once. So the handler tallies each record's consequences in the
partition's outbox, the tally travels with the batch into the transaction, and the metrics
take it only when that transaction has committed (`streams.live.metrics`); an aborted batch's
tally is dropped with it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from streams.rules.effects import Action, CaseChanged, Effect, OrderPaid, Phase, Reminder
from streams.rules.policy import Rule

#: A counter's name and its label values, in the metric's label order.
Key = tuple[str, tuple[str, ...]]


@dataclass(slots=True)
class Tally:
    """Counter increments, lateness observations and open-case changes of one batch."""

    counts: Counter[Key] = field(default_factory=Counter)
    #: fired_at - deadline_at of each auto-action, seconds.
    lateness: list[float] = field(default_factory=list)
    #: How long each input record waited for its turn in append order (`merge.py`), seconds.
    waits: list[float] = field(default_factory=list)
    #: Change in the number of open cases by phase, and of running deadlines by rule.
    phases: Counter[Phase] = field(default_factory=Counter)
    rules: Counter[Rule] = field(default_factory=Counter)

    def __bool__(self) -> bool:
        return bool(self.counts or self.lateness or self.waits or self.phases or self.rules)

    def effects(self, effects: list[Effect], fired_at: datetime) -> None:
        """Count what the engine did; auto-actions fired at `fired_at`."""
        counts = self.counts
        for effect in effects:
            if type(effect) is CaseChanged:
                self._case(effect)
            elif type(effect) is Action:
                counts["auto_actions", (effect.rule, effect.type)] += 1
                self.lateness.append((fired_at - effect.deadline_at).total_seconds())
            elif type(effect) is Reminder:
                counts["reminders", (effect.rule,)] += 1
            elif type(effect) is OrderPaid:
                counts["orders_paid", ()] += 1

    def _case(self, change: CaseChanged) -> None:
        counts = self.counts
        if change.before is None:
            counts["cases_opened", (change.kind, change.reason)] += 1
        else:
            self.phases[change.before] -= 1
        if change.before_rule is not None:
            self.rules[change.before_rule] -= 1
        if change.outcome is None:
            self.phases[change.phase] += 1
        else:
            counts["cases_closed", (change.outcome,)] += 1
            if change.first_refund and change.cause is not None:
                counts["refunds", (change.kind, change.reason, change.cause)] += 1
        if change.rule is not None:
            self.rules[change.rule] += 1

    def dead_letter(self, code: str) -> None:
        self.counts["deadletters", (code,)] += 1

    def duplicate(self) -> None:
        self.counts["duplicates", ()] += 1

    def rerouted(self) -> None:
        self.counts["rerouted", ()] += 1

    def merge(self, other: Tally) -> None:
        """Add `other`'s counts to these."""
        self.counts.update(other.counts)
        self.lateness.extend(other.lateness)
        self.waits.extend(other.waits)
        self.phases.update(other.phases)
        self.rules.update(other.rules)
