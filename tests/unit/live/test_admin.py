"""`streams.live.admin.replication_factor` over describe_topics' answer (the real broker's in
tests/integration/test_topics.py)."""

from __future__ import annotations

from typing import Any

from streams.live.admin import replication_factor


class DescribingAdmin:
    def __init__(self, replicas: list[list[int]]) -> None:
        self.replicas = replicas
        self.asked: list[list[str]] = []

    async def describe_topics(self, topics: list[str]) -> list[dict[str, Any]]:
        self.asked.append(topics)
        partitions = [{"partition": n, "replicas": r} for n, r in enumerate(self.replicas)]
        return [{"topic": topics[0], "partitions": partitions}]


async def test_the_most_replicas_of_any_partition() -> None:
    # partitions can differ (after a manual reassignment): the most replicas of any counts
    admin = DescribingAdmin([[1, 2, 3], [2, 3], [3, 1, 2]])
    assert await replication_factor(admin, "t") == 3  # aiokafka is untyped: any admin passes
    assert admin.asked == [["t"]]
