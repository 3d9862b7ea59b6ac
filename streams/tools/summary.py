"""Counts of what a run did: events by outcome, dead letters by code, actions by type."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from streams.rules.effects import Action, CaseChanged, Effect, OrderForgotten, OrderPaid, Reminder


@dataclass(slots=True)
class Summary:
    """Running totals; `refund_rate` = refunded orders / paid orders."""

    read: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    reminders: int = 0
    paid_orders: int = 0
    refunded_orders: int = 0
    #: Orders deleted at the end of the policy's `order_retention`.
    forgotten_orders: int = 0

    def count_effects(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Action):
                self.actions[effect.type] += 1
            elif isinstance(effect, Reminder):
                self.reminders += 1
            elif isinstance(effect, OrderPaid):
                self.paid_orders += 1
            elif isinstance(effect, CaseChanged) and effect.first_refund:
                self.refunded_orders += 1
            elif isinstance(effect, OrderForgotten):
                self.forgotten_orders += 1

    @property
    def refund_rate(self) -> float | None:
        return self.refunded_orders / self.paid_orders if self.paid_orders else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "events_read": self.read,
            "applied": self.applied,
            "duplicates": self.duplicates,
            "dead_letters": dict(sorted(self.dead_letters.items())),
            "actions": dict(sorted(self.actions.items())),
            "reminders": self.reminders,
            "paid_orders": self.paid_orders,
            "refunded_orders": self.refunded_orders,
            "refund_rate": self.refund_rate,
            "forgotten_orders": self.forgotten_orders,
        }

    def render(self) -> str:
        """A few human lines."""
        dead = ", ".join(f"{k} {v}" for k, v in sorted(self.dead_letters.items())) or "none"
        acts = ", ".join(f"{k} {v}" for k, v in sorted(self.actions.items())) or "none"
        rate = self.refund_rate
        shown = "n/a (no order.paid seen)" if rate is None else f"{rate:.2%}"
        return (
            f"events read   {self.read}\n"
            f"applied       {self.applied}\n"
            f"duplicates    {self.duplicates}\n"
            f"dead letters  {sum(self.dead_letters.values())} ({dead})\n"
            f"actions       {sum(self.actions.values())} ({acts})\n"
            f"reminders     {self.reminders}\n"
            f"refund rate   {shown} "
            f"({self.refunded_orders} refunded / {self.paid_orders} paid orders)\n"
            f"forgotten     {self.forgotten_orders} orders (policy order_retention)"
        )
