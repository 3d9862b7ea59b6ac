"""Creating and checking the contract's topics on a real broker (the admin adapter)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaTimeoutError

from streams.contract.topics import TopicSpec

LISTED_TIMEOUT_S = 30


@dataclass(frozen=True, slots=True)
class TopicReport:
    """What `check` found for one topic: no problems means it matches its spec."""

    name: str
    problems: tuple[str, ...] = ()


async def create_topics(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> list[str]:
    """Create the topics that do not exist yet; returns the names created (idempotent)."""
    existing = set(await admin.list_topics())
    missing = [s for s in specs if s.name not in existing]
    if missing:
        await admin.create_topics(
            [
                NewTopic(
                    s.name,
                    num_partitions=s.partitions,
                    replication_factor=s.replication_factor,
                    topic_configs=s.configs,
                )
                for s in missing
            ]
        )
        await until_listed(admin, {s.name for s in missing})
    return [s.name for s in missing]


async def until_listed(admin: AIOKafkaAdminClient, names: set[str]) -> None:
    """Wait until new topics show in metadata: creation returns before every broker knows."""
    try:
        async with asyncio.timeout(LISTED_TIMEOUT_S):
            while not names <= set(await admin.list_topics()):  # noqa: ASYNC110 - polling the broker
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise KafkaTimeoutError(f"created topics not visible after {LISTED_TIMEOUT_S} s") from None


async def check_topics(
    admin: AIOKafkaAdminClient,
    specs: list[TopicSpec],
    min_message_bytes: Mapping[str, int] | None = None,
) -> list[TopicReport]:
    """Compare each topic on the broker with its spec: partitions and configs, and (for the
    topics named in `min_message_bytes`) that `max.message.bytes` is at least that."""
    existing = set(await admin.list_topics())
    present = [s for s in specs if s.name in existing]
    reports = {s.name: TopicReport(s.name, ("missing",)) for s in specs}
    if not present:
        return list(reports.values())
    described = {t["topic"]: t for t in await admin.describe_topics([s.name for s in present])}
    resources = [ConfigResource(ConfigResourceType.TOPIC, s.name) for s in present]
    configs: dict[str, dict[str, str]] = {}
    for response in await admin.describe_configs(resources):
        for _code, _msg, _type, name, entries in response.resources:
            configs[name] = {entry[0]: entry[1] for entry in entries}
    for spec in present:
        problems = []
        partitions = len(described[spec.name]["partitions"])
        if partitions != spec.partitions:
            problems.append(f"has {partitions} partitions, expected {spec.partitions}")
        actual = configs.get(spec.name, {})
        for key, want in sorted(spec.configs.items()):
            if actual.get(key) != want:
                problems.append(f"{key} is {actual.get(key)!r}, expected {want!r}")
        need = (min_message_bytes or {}).get(spec.name)
        limit = actual.get("max.message.bytes")
        if need is not None and limit is not None and int(limit) < need:
            problems.append(
                f"max.message.bytes is {limit}, below the {need} bytes the worker may write in "
                f"one batch (the largest record the contract's bounds allow, or a full batch): "
                f"raise it to at least {need}"
            )
        reports[spec.name] = TopicReport(spec.name, tuple(problems))
    return list(reports.values())


async def replication_factor(admin: AIOKafkaAdminClient, topic: str) -> int:
    """How many replicas `topic` keeps of its partitions (the most of any partition)."""
    described = await admin.describe_topics([topic])
    return max(len(p["replicas"]) for p in described[0]["partitions"])


async def delete_topics_named(admin: AIOKafkaAdminClient, prefix: str) -> list[str]:
    """Delete every topic whose name starts with `prefix` (one run's topics); returns them."""
    topics = sorted(name for name in await admin.list_topics() if name.startswith(prefix))
    if topics:
        await admin.delete_topics(topics)
    return topics
