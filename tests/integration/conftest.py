"""Fixtures for tests against the real local stack (`deploy/local/stack up`).

These tests never skip: a stack that is not running is a failure, with a hint how to start it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.live.admin import until_listed
from tests.integration.endpoints import BOOTSTRAP
from tests.integration.worker_harness import (
    FAST_POLICY,
    Env,
    WorkerProcess,
    create_contract_topics,
)

HINT = "is the local stack up? run `make stack-up` (deploy/local/stack up)"


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
    await until_listed(admin, {unique})
    try:
        yield unique
    finally:
        await admin.delete_topics([unique])


@pytest.fixture
async def env(unique: str, tmp_path: Path) -> Env:
    policy = tmp_path / "policy.yaml"
    policy.write_text(FAST_POLICY)
    await create_contract_topics(f"{unique}-")
    return Env(f"{unique}-", f"{unique}-app", policy, tmp_path)


@pytest.fixture
def workers(env: Env) -> Iterator[Callable[..., WorkerProcess]]:
    """Makes worker processes (not started); stops every one of them after the test."""
    started: list[WorkerProcess] = []

    def make(name: str = "w", **extra_env: str) -> WorkerProcess:
        folder = env.folder / name
        folder.mkdir(exist_ok=True)
        worker = WorkerProcess(env.prefix, env.app_id, env.policy, folder, dict(extra_env))
        started.append(worker)
        return worker

    yield make
    for worker in started:
        worker.stop()
