"""The whole pipeline as a user runs it: topics, worker and live producer from the CLI.

Run on the other pinned Kafka line in CI (`KAFKA_VERSION=4 make e2e`) as well as in the
main suite: the simulated stream produced live gives exactly replay's answers.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Hashable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from streams.contract.times import format_time, parse_time
from streams.rules.policy import load_policy
from streams.tools.replay import replay
from tests.integration.endpoints import BOOTSTRAP
from tests.integration.worker_harness import (
    PARTITIONS,
    Outputs,
    WorkerProcess,
    not_yet_in,
    outputs_once_there,
)

SCALE = "28800"  # 1 s of wall time = 8 h of business time: merchant_review 6 s
ORDERS = "40"


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.tools.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )


def answers(live: Outputs) -> dict[str, list[str]]:
    return {
        "actions": [a["action_id"] for a in live["aftersale-actions"]],
        "reminders": [n["notification_id"] for n in live["aftersale-notifications"]],
        "dead letters": [d["error"] for d in live["aftersale-deadletter"]],
    }


async def test_live_stream_gives_replays_answers(tmp_path: Path, unique: str) -> None:
    prefix = f"{unique}-"
    env = dict(os.environ, AFTERSALE_KAFKA_BOOTSTRAP=BOOTSTRAP, AFTERSALE_TOPIC_PREFIX=prefix)
    cli("topics", "create", "--prefix", prefix, "--partitions", str(PARTITIONS), env=env)
    policy = tmp_path / "policy.yaml"
    start = format_time(datetime.now(UTC) + timedelta(seconds=15))  # after the worker is up
    story = ["--orders", ORDERS, "--seed", "11", "--time-scale", SCALE, "--span", "P2D"]
    story += ["--start", start]
    cli("simulate", *story, "--policy-out", str(policy), "--out", str(tmp_path / "in.jsonl"),
        env=env)  # fmt: skip

    worker = WorkerProcess(prefix, f"{unique}-app", policy, tmp_path)
    worker.start()
    try:
        await worker.wait_ready()
        producer = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "streams.tools.cli", "simulate", *story, "--policy", str(policy),
            "--live", env=env, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await producer.communicate()
        assert producer.returncode == 0, err.decode()
        last = max(
            parse_time(line.split(b'"occurred_at":"')[1].split(b'"')[0].decode())
            for line in (tmp_path / "in.jsonl").read_bytes().splitlines()
            if b'"occurred_at":"' in line and b"yesterday" not in line
        )
        horizon = last + timedelta(seconds=40)  # beyond every deadline the story can start
        summary = replay(tmp_path / "in.jsonl", tmp_path / "replay", load_policy(policy), horizon)

        def expected(name: str, key: str) -> list[str]:
            lines = (tmp_path / "replay" / name).read_bytes().splitlines()
            return sorted(orjson.loads(line)[key] for line in lines)

        wanted = {
            "actions": expected("actions.jsonl", "action_id"),
            "reminders": expected("notifications.jsonl", "notification_id"),
            "dead letters": expected("deadletter.jsonl", "error"),
        }

        def missing(live: Outputs) -> dict[str, list[Hashable]]:
            return not_yet_in(wanted, answers(live))

        # replay's answers up to the horizon, read once all there (and settled)
        live = await outputs_once_there(
            prefix,
            missing,
            "replay's actions, reminders and dead letters",
            workers=[worker],
            within=(horizon - datetime.now(UTC)).total_seconds() + 60,
        )
    finally:
        worker.stop()

    assert sorted(a["action_id"] for a in live["aftersale-actions"]) == expected(
        "actions.jsonl", "action_id"
    ), worker.tail()
    assert sorted(n["notification_id"] for n in live["aftersale-notifications"]) == expected(
        "notifications.jsonl", "notification_id"
    )
    assert sorted(d["error"] for d in live["aftersale-deadletter"]) == expected(
        "deadletter.jsonl", "error"
    )
    assert sum(summary.actions.values()) > 5
    for action in live["aftersale-actions"]:
        assert parse_time(action["fired_at"]) >= parse_time(action["deadline_at"])
