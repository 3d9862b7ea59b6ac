"""The contract's topics: their names (the one place they are spelled), and their definitions
in `topics/topics.yaml` read into typed specs (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from streams.contract.folder import topics_dir
from streams.errors import ConfigError

ORDER_EVENTS: Final = "order-events"
AFTERSALE_EVENTS: Final = "aftersale-events"
ACTIONS: Final = "aftersale-actions"
NOTIFICATIONS: Final = "aftersale-notifications"
DEADLETTER: Final = "aftersale-deadletter"
INPUTS: Final = (ORDER_EVENTS, AFTERSALE_EVENTS)
OUTPUTS: Final = (ACTIONS, NOTIFICATIONS, DEADLETTER)


def topic_of(event_type: str) -> str:
    """The input topic an event type belongs to, from its prefix."""
    return ORDER_EVENTS if event_type.startswith("order.") else AFTERSALE_EVENTS


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic: its name, partition count, replication factor and Kafka configs."""

    name: str
    role: str
    partitions: int
    replication_factor: int
    configs: dict[str, str]


def load_topic_specs(
    path: Path | None = None,
    partitions: int | None = None,
    replication_factor: int | None = None,
    prefix: str = "",
) -> list[TopicSpec]:
    """Read topics.yaml; `partitions`/`replication_factor` override every topic's (tests, demos).

    `prefix` is prepended to every name (isolated topics per test run).
    """
    source = path or topics_dir() / "topics.yaml"
    try:
        data: Any = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read topic definitions {source}: {exc}") from exc
    defaults = data.get("defaults", {})
    specs = []
    for name, spec in data["topics"].items():
        specs.append(
            TopicSpec(
                name=prefix + name,
                role=str(spec["role"]),
                partitions=int(partitions or spec.get("partitions", defaults.get("partitions"))),
                replication_factor=int(
                    replication_factor
                    or spec.get("replication_factor", defaults.get("replication_factor", 1))
                ),
                configs={k: str(v) for k, v in spec.get("configs", {}).items()},
            )
        )
    counts = {s.partitions for s in specs if s.name.removeprefix(prefix) in INPUTS}
    if len(counts) > 1:
        raise ConfigError(f"{source}: {' and '.join(INPUTS)} must have the same partition count")
    return specs
