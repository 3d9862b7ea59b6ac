"""A real Prometheus server scrapes two workers that share the partitions, with the project's
recording rules (deploy/prometheus/rules.yml) loaded: after a simulated stream, the refund
rate read through Prometheus's HTTP API is the rate replay computes from the same input, and
the auto-actions summed over the workers are the actions on the topic."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Hashable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from streams.contract.times import format_time, parse_time
from streams.rules.policy import load_policy
from streams.tools.replay import replay
from tests.integration.endpoints import BOOTSTRAP
from tests.integration.worker_harness import (
    PARTITIONS,
    Outputs,
    WorkerProcess,
    free_port,
    not_yet_in,
    outputs_once_there,
)
from tests.repo import ROOT

RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
SCALE = "28800"  # 1 s of wall time = 8 h of business time: merchant_review 6 s
ORDERS = "60"


def cli(*args: str, env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "streams", *args], env=env, check=True, capture_output=True,
        timeout=600,
    )  # fmt: skip


@pytest.fixture
async def prometheus(tmp_path: Path) -> AsyncIterator[tuple[int, Path]]:
    """A Prometheus server (Debian's) with the project's rules; its config is written by the
    test (the targets), and reloaded through its HTTP API."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed: apt-get install prometheus (.ci/run does)")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text("global: {scrape_interval: 1s}\n")
    log = (tmp_path / "prometheus.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle",
        stdout=asyncio.subprocess.DEVNULL, stderr=log,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not await ready(port):
            assert process.returncode is None, (tmp_path / "prometheus.log").read_text()
            assert time.monotonic() < deadline, "prometheus did not start"
            await asyncio.sleep(0.2)  # polling its /-/ready
        yield port, config
    finally:
        process.terminate()
        await process.wait()
        log.close()


async def ready(port: int) -> bool:
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/-/ready") as response,
        ):
            return response.status == 200
    except aiohttp.ClientError:
        return False


async def query(port: int, expr: str) -> float | None:
    """The value of an instant query with one series (None: no series)."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": expr}) as response,
    ):
        body: Any = await response.json()
    assert body["status"] == "success", body
    result = body["data"]["result"]
    if not result:
        return None
    assert len(result) == 1, result
    return float(result[0]["value"][1])


async def settled(port: int, expr: str, want: float, within: float = 60) -> float | None:
    """Query `expr` until it equals `want` (or `within` passes); its last value."""
    deadline = time.monotonic() + within
    value = await query(port, expr)
    while value != want and time.monotonic() < deadline:
        await asyncio.sleep(0.5)  # the next scrape (every second) and rule evaluation
        value = await query(port, expr)
    return value


def occurred_at(line: bytes) -> datetime:
    """A simulated record's occurred_at (the earliest instant for the bad ones)."""
    try:
        return parse_time(orjson.loads(line)["occurred_at"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return datetime.min.replace(tzinfo=UTC)


async def test_prometheus_reads_the_refund_rate_and_the_actions_of_two_workers(
    tmp_path: Path, unique: str, prometheus: tuple[int, Path]
) -> None:
    prom_port, config = prometheus
    prefix = f"{unique}-"
    env = dict(os.environ, AFTERSALE_KAFKA_BOOTSTRAP=BOOTSTRAP, AFTERSALE_TOPIC_PREFIX=prefix)
    cli("topics", "create", "--prefix", prefix, "--partitions", str(PARTITIONS), env=env)
    policy = tmp_path / "policy.yaml"
    start = format_time(datetime.now(UTC) + timedelta(seconds=20))  # after the workers are up
    story = ["--orders", ORDERS, "--seed", "5", "--time-scale", SCALE, "--span", "P2D"]
    story += ["--start", start]
    cli("simulate", *story, "--policy-out", str(policy), "--out", str(tmp_path / "in.jsonl"),
        env=env)  # fmt: skip

    ports = [free_port(), free_port()]
    workers = []
    for name, port in zip(("w1", "w2"), ports, strict=True):
        folder = tmp_path / name
        folder.mkdir()
        workers.append(
            WorkerProcess(prefix, f"{unique}-app", policy, folder,
                          {"AFTERSALE_WEB_PORT": str(port)})
        )  # fmt: skip
    targets = ", ".join(f"'127.0.0.1:{port}'" for port in ports)
    # the project's rules as they are, but evaluated every second (they say every minute)
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES.read_text().replace("interval: 1m", "interval: 1s"))
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{rules}']\n"
        f"scrape_configs: [{{job_name: aftersale, static_configs: [{{targets: [{targets}]}}]}}]\n"
    )
    reload = f"http://127.0.0.1:{prom_port}/-/reload"
    async with aiohttp.ClientSession() as session, session.post(reload) as response:
        assert response.status == 200, await response.text()
    for worker in workers:
        worker.start()
    try:
        for worker in workers:
            await worker.wait_ready()
        shared = "min(aftersale_partitions_assigned)"  # both hold partitions
        assert await settled(prom_port, f"count({shared} > 0)", 1.0, within=60) == 1.0
        producer = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "streams", "simulate", *story, "--policy", str(policy),
            "--live", env=env, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await producer.communicate()
        assert producer.returncode == 0, err.decode()
        last = max(occurred_at(line) for line in (tmp_path / "in.jsonl").read_bytes().splitlines())
        horizon = last + timedelta(seconds=40)  # beyond every deadline the story can start
        summary = replay(tmp_path / "in.jsonl", tmp_path / "replay", load_policy(policy), horizon)
        wanted = {
            "actions": sorted(
                orjson.loads(line)["action_id"]
                for line in (tmp_path / "replay" / "actions.jsonl").read_bytes().splitlines()
            )
        }

        def missing(live: Outputs) -> dict[str, list[Hashable]]:
            actions = [a["action_id"] for a in live["aftersale-actions"]]
            return not_yet_in(wanted, {"actions": actions})

        live = await outputs_once_there(
            prefix, missing, "replay's actions", workers=workers,
            within=(horizon - datetime.now(UTC)).total_seconds() + 60,
        )  # fmt: skip
        actions = len(live["aftersale-actions"])
        assert actions == len(wanted["actions"]) == sum(summary.actions.values())
        # summed over the two workers, as Prometheus reads them
        total = "sum(aftersale_auto_actions_total)"
        assert await settled(prom_port, total, float(actions)) == float(actions)
        rate = summary.refund_rate
        assert rate is not None
        assert 0 < rate < 1
        paid = await settled(
            prom_port, "sum(aftersale_orders_paid_total)", float(summary.paid_orders)
        )
        assert paid == summary.paid_orders
        raw = "sum(aftersale_refunds_total) / sum(aftersale_orders_paid_total)"
        assert await settled(prom_port, raw, rate) == rate
        # the recording rule: increase() extrapolates each worker's counters towards the
        # window's end by a share of a scrape interval (about 1 % of this short run), numerator
        # and denominator alike, so its ratio is the same up to that
        recorded = "job:aftersale_refunds_per_orders_paid:ratio_increase1h"
        deadline = time.monotonic() + 10
        value = await query(prom_port, recorded)
        while (value is None or abs(value - rate) > 0.02 * rate) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)  # the next evaluation
            value = await query(prom_port, recorded)
        assert value is not None
        assert abs(value - rate) <= 0.02 * rate, (value, rate)
    finally:
        for worker in workers:
            worker.stop()
