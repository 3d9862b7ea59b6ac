"""The worker's /metrics, /healthz and /readyz as a scraper and a kubelet see them."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from streams.contract.times import parse_time
from tests.integration.worker_harness import (
    Env,
    Feeder,
    WorkerProcess,
    free_port,
    read_outputs,
)


async def get(port: int, path: str) -> tuple[int, str]:
    """(status, body) of GET http://127.0.0.1:port/path; (0, error) when nothing answers."""
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"http://127.0.0.1:{port}{path}", timeout=aiohttp.ClientTimeout(total=2)
            ) as response,
        ):
            return response.status, await response.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        return 0, repr(exc)


async def sample(port: int, name: str, **labels: str) -> float:
    """The sum of a metric's samples on a worker's /metrics, over the label sets that have
    `labels` (all of them when none are given)."""
    status, text = await get(port, "/metrics")
    assert status == 200, text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    )


async def test_readyz_says_503_until_recovery_is_done_then_200(
    env: Env, workers: Callable[..., WorkerProcess]
) -> None:
    port = free_port()
    worker = workers(AFTERSALE_WEB_PORT=str(port))
    worker.start()
    statuses: list[int] = []
    deadline = time.monotonic() + 90
    while not statuses or statuses[-1] != 200:
        assert time.monotonic() < deadline, f"never ready: {statuses[-5:]}\n{worker.tail()}"
        statuses.append((await get(port, "/readyz"))[0])
        await asyncio.sleep(0.05)  # polling as a readiness probe does
    answered = [s for s in statuses if s]
    assert answered[0] == 503, statuses  # the web server answers before recovery ends
    assert set(answered) == {503, 200}
    assert (await get(port, "/healthz"))[0] == 200
    assert await sample(port, "aftersale_ready") == 1
    assert await sample(port, "aftersale_partitions_assigned") == 3


async def test_a_count_moves_once_though_a_crash_makes_the_work_be_redone(
    env: Env, workers: Callable[..., WorkerProcess]
) -> None:
    """kill -9 mid-run: what the first process counted (its last scrape) plus what the second
    counts is never more than what was written (nothing counted twice), and no less than it
    minus what committed between that last scrape and the kill."""
    port = free_port()
    worker = workers(AFTERSALE_WEB_PORT=str(port))
    worker.start()
    await worker.wait_ready()
    name = "aftersale_auto_actions_total"
    expected: set[str] = set()
    async with Feeder(env.prefix) as feed:
        for n in range(40):
            await feed.request(f"{env.prefix}o-{n}", f"c-{n}", kind="refund_only")
            expected.add(f"c-{n}:merchant_review")
            await asyncio.sleep(0.1)  # deadlines (3 s) fall due over four seconds
    first = 0.0
    until = time.monotonic() + 2.5  # scrape as fast as possible while deadlines fire
    while time.monotonic() < until:
        first = await sample(port, name)
    worker.stop(signal.SIGKILL)
    killed_at = time.time()
    assert 0 < first < len(expected), first  # killed mid-run
    worker.start()
    await worker.wait_ready()
    deadline = time.monotonic() + 60
    while True:
        actions = (await read_outputs(env.prefix, settle=0.5))["aftersale-actions"]
        seen = {a["action_id"] for a in actions}
        if expected <= seen:
            break
        assert time.monotonic() < deadline, worker.tail()
    # (counted as each transaction commits, before its actions become visible)
    second = await sample(port, name)
    assert len(actions) == len(expected)  # exactly once on the topic
    recent = sum(
        1 for a in actions if killed_at - 1.0 <= parse_time(a["fired_at"]).timestamp() <= killed_at
    )
    assert first + second <= len(expected), (first, second)  # nothing counted twice
    assert first + second >= len(expected) - recent, (first, second, recent)
