"""The worker's Prometheus metrics: counts taken at commit, gauges read at each scrape.

Counters and the lateness histogram move only when a partition's transaction commits
(`tally.py`), so work redone after a crash or a rebalance is counted once. Every label set
starts at zero; no label names a merchant, an order or a case. The gauges describe the
partitions this worker owns, read from its runtime at each scrape (`RuntimeCollector`);
summed over workers they describe the whole group. Names, units (seconds) and labels are the
interface of `deploy/prometheus/rules.yml` and `deploy/grafana/aftersale.json`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Final, get_args

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from streams.errors import DEAD_LETTER_CODES
from streams.live.runtime import Runtime
from streams.live.tally import Tally
from streams.rules.cases import LAPSES, OPEN_PHASES
from streams.rules.effects import ActionType, CaseOutcome, RefundCause
from streams.rules.policy import RULES

#: Seconds, around the firing target (p99 <= 1 s).
LATENESS_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300)
#: Seconds, around the timer's interval (0.2 s): a record waits for a sample at most that long.
WAIT_BUCKETS: Final = (0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5, 30)
KINDS: Final = ("refund_only", "return_refund", "exchange", "repair")
REASONS: Final = (
    "quality",
    "logistics",
    "not_as_described",
    "no_reason",
    "mistaken_order",
    "other",
)
#: Which auto-action each rule can take: its lapse's, and merchant_review's auto-approval.
_APPROVES: Final[tuple[ActionType, ...]] = ("auto_approve",)
ACTIONS_OF: Final[dict[str, tuple[ActionType, ...]]] = {
    rule: (_APPROVES if rule == "merchant_review" else ()) + (action,)
    for rule, (action, _) in LAPSES.items()
}
#: A partition whose position has not moved for this long while records wait counts as stuck.
STUCK_S: Final = 120.0
#: The deadline timer must have run within this long for the worker to count as alive.
TIMER_STALE_S: Final = 30.0


class WorkerMetrics:
    """The counters and histogram of one worker process, in `registry`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        # No `_created` series beside each counter: nothing here reads them, and they would
        # double what Prometheus stores (a process-wide switch of prometheus_client).
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry
        self.orders_paid = Counter(
            "aftersale_orders_paid", "Orders seen paid for the first time.", registry=registry
        )
        self.cases_opened = Counter(
            "aftersale_cases_opened",
            "After-sale cases opened.",
            ["kind", "reason"],
            registry=registry,
        )
        self.refunds = Counter(
            "aftersale_refunds",
            "Orders refunded for the first time (their first case closed refunded), by who "
            "decided it: merchant, auto (an auto_refund) or platform.",
            ["kind", "reason", "cause"],
            registry=registry,
        )
        self.cases_closed = Counter(
            "aftersale_cases_closed", "Cases closed, by outcome.", ["outcome"], registry=registry
        )
        self.auto_actions = Counter(
            "aftersale_auto_actions",
            "Auto-actions taken when a deadline passed.",
            ["rule", "type"],
            registry=registry,
        )
        self.reminders = Counter(
            "aftersale_reminders", "Deadline reminders sent.", ["rule"], registry=registry
        )
        self.duplicates = Counter(
            "aftersale_duplicates",
            "Retried events (an event_id already applied), not applied again.",
            registry=registry,
        )
        self.deadletters = Counter(
            "aftersale_deadletters",
            "Input records refused to the dead-letter topic.",
            ["code"],
            registry=registry,
        )
        self.rerouted = Counter(
            "aftersale_rerouted",
            "Input records found on another partition than murmur2 of their key, rerouted.",
            registry=registry,
        )
        self.lateness = Histogram(
            "aftersale_deadline_lateness_seconds",
            "fired_at - deadline_at of each auto-action.",
            buckets=LATENESS_BUCKETS,
            registry=registry,
        )
        self.waits = Histogram(
            "aftersale_input_wait_seconds",
            "How long each input record waited, once read, for its turn in append order "
            "across the partition's input topics (the input-order rule's cost).",
            buckets=WAIT_BUCKETS,
            registry=registry,
        )
        self._by_name: dict[str, Counter] = {
            "orders_paid": self.orders_paid,
            "cases_opened": self.cases_opened,
            "refunds": self.refunds,
            "cases_closed": self.cases_closed,
            "auto_actions": self.auto_actions,
            "reminders": self.reminders,
            "duplicates": self.duplicates,
            "deadletters": self.deadletters,
            "rerouted": self.rerouted,
        }
        self._start_at_zero()

    def _start_at_zero(self) -> None:
        """Every label set exported from the start, at zero (a rate needs a first sample)."""
        for kind in KINDS:
            for reason in REASONS:
                self.cases_opened.labels(kind, reason)
                for cause in get_args(RefundCause):
                    self.refunds.labels(kind, reason, cause)
        for outcome in get_args(CaseOutcome):
            self.cases_closed.labels(outcome)
        for rule in RULES:
            self.reminders.labels(rule)
            for action in ACTIONS_OF[rule]:
                self.auto_actions.labels(rule, action)
        for code in DEAD_LETTER_CODES:
            self.deadletters.labels(code)

    def committed(self, tally: Tally) -> None:
        """A batch's transaction committed: count what it did."""
        for (name, labels), amount in tally.counts.items():
            counter = self._by_name[name]
            (counter.labels(*labels) if labels else counter).inc(amount)
        for seconds in tally.lateness:
            self.lateness.observe(seconds)
        for seconds in tally.waits:
            self.waits.observe(seconds)


class RuntimeCollector(Collector):
    """The gauges, computed from the worker's runtime at each scrape."""

    def __init__(
        self,
        runtime: Runtime,
        now: Callable[[], datetime],
        ready: Callable[[], bool],
        assigned: Callable[[], set[int]],
    ) -> None:
        self.runtime, self.now, self.ready, self.assigned = runtime, now, ready, assigned

    def collect(self) -> Iterator[GaugeMetricFamily]:
        runtime, now = self.runtime, self.now()
        parts = dict(runtime.parts)
        open_cases = GaugeMetricFamily(
            "aftersale_open_cases",
            "Open cases by phase, on the partitions this worker owns.",
            labels=["phase"],
        )
        phases = runtime.open_cases()
        for phase in OPEN_PHASES:
            open_cases.add_metric([phase], phases.get(phase, 0))
        yield open_cases
        pending = GaugeMetricFamily(
            "aftersale_pending_deadlines",
            "Running (not paused) deadlines by rule, on the partitions this worker owns.",
            labels=["rule"],
        )
        rules = runtime.running_deadlines()
        for rule in RULES:
            pending.add_metric([rule], rules.get(rule, 0))
        yield pending
        overdue = 0.0
        for part in parts.values():
            wake = part.engine.next_wakeup()
            if wake is not None and wake < now:
                overdue = max(overdue, (now - wake).total_seconds())
        yield GaugeMetricFamily(
            "aftersale_oldest_overdue_seconds",
            "How long the earliest due, not yet fired deadline or reminder has been due.",
            value=overdue,
        )
        lag = GaugeMetricFamily(
            "aftersale_consumer_lag_records",
            "Records behind the end offset (as last sampled), per input partition owned.",
            labels=["topic", "partition"],
        )
        age = GaugeMetricFamily(
            "aftersale_catchup_age_seconds",
            "Now minus the latest instant up to which every record written before it has been "
            "read, per partition owned (catch-up safety).",
            labels=["partition"],
        )
        for partition, part in sorted(parts.items()):
            for topic, behind in part.watermark.lag().items():
                lag.add_metric([topic, str(partition)], behind)
            safe = self.runtime.safe_until(part)
            if safe is not None:
                age.add_metric([str(partition)], max(0.0, (now - safe).total_seconds()))
        yield lag
        yield age
        yield GaugeMetricFamily(
            "aftersale_ready",
            "1 when every assigned partition is recovered and its due index built, else 0.",
            value=1.0 if self.ready() else 0.0,
        )
        yield GaugeMetricFamily(
            "aftersale_partitions_assigned",
            "Partitions this worker owns.",
            value=float(len(self.assigned())),
        )


class Liveness:
    """Whether the worker still works: its deadline timer runs, and no input stays stuck."""

    def __init__(self, runtime: Runtime, clock: Callable[[], float] = time.monotonic) -> None:
        self.runtime, self.clock = runtime, clock
        self.timer_ran_at = clock()
        #: (partition, topic) -> (position, since when it has not moved while records waited)
        self._still: dict[tuple[int, str], tuple[int, float]] = {}

    def timer_ran(self) -> None:
        """The deadline timer completed a run."""
        self.timer_ran_at = self.clock()

    def problems(self) -> list[str]:
        """Why the worker is not alive (empty: it is)."""
        now, found = self.clock(), []
        if now - self.timer_ran_at > TIMER_STALE_S:
            found.append(f"the deadline timer has not run for {now - self.timer_ran_at:.0f} s")
        still: dict[tuple[int, str], tuple[int, float]] = {}
        for partition, part in list(self.runtime.parts.items()):
            positions = part.watermark.positions
            for topic, behind in part.watermark.lag().items():
                if behind <= 0:
                    continue
                key = (partition, topic)
                position = positions.get(topic, -1)
                was = self._still.get(key)
                since = was[1] if was is not None and was[0] == position else now
                still[key] = (position, since)
                if now - since > STUCK_S:
                    found.append(
                        f"{topic}[{partition}] has not moved from offset {position} for "
                        f"{now - since:.0f} s with {behind} record(s) waiting"
                    )
        self._still = still
        return found
