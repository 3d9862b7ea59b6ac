"""Fixtures for tests against the real local stack (`deploy/local/stack up`).

These tests never skip: a stack that is not running is a failure, with a hint how to start it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
HINT = "is the local stack up? run `make stack-up` (deploy/local/stack up)"


@pytest.fixture
def unique() -> str:
    """A name no other test (or earlier run) uses: for topics and consumer groups."""
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def admin() -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP, request_timeout_ms=10_000)
    try:
        await client.start()
    except Exception as exc:  # any connection failure: say what to do
        pytest.fail(f"cannot reach Kafka at {BOOTSTRAP}: {exc!r}; {HINT}")
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def topic(admin: AIOKafkaAdminClient, unique: str) -> AsyncIterator[str]:
    """A fresh 3-partition topic, deleted afterwards."""
    await admin.create_topics([NewTopic(unique, num_partitions=3, replication_factor=1)])
    try:
        yield unique
    finally:
        await admin.delete_topics([unique])
