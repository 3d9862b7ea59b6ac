"""A new policy version taken by a running worker (no restart), as replay reads the same file;
a change that would move a running case refused, the worker going on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from streams.contract.times import format_time, parse_time
from tests.integration.test_metrics import sample
from tests.integration.test_worker import replays_answers
from tests.integration.worker_harness import (
    FAST_POLICY,
    Env,
    Feeder,
    WorkerProcess,
    free_port,
    outputs_once_there,
    replay_of,
    seconds,
    wait_for,
)


def versioned(effective_from: datetime, review: float) -> str:
    """The fast policy, then a version with another review deadline from `effective_from`."""
    first = FAST_POLICY.replace("\n", "\n    ").rstrip()
    return (
        f"versions:\n  - {first}\n"
        f"  - effective_from: '{format_time(effective_from)}'\n"
        f"    deadlines: {{merchant_review: {review}}}\n"
    )


async def test_a_version_added_to_the_file_runs_from_its_instant_without_a_restart(
    env: Env, workers: Callable[..., WorkerProcess]
) -> None:
    port = free_port()
    worker = workers(AFTERSALE_WEB_PORT=str(port), AFTERSALE_POLICY_RELOAD_INTERVAL="0.2")
    worker.start()
    await worker.wait_ready()

    async def taken(outcome: str) -> float:
        return await sample(port, "aftersale_policy_reloads_total", outcome=outcome)

    async with Feeder(env.prefix) as feed:
        before = await feed.request("o-1", "c-1")  # under the 3 s review
        # a version dated a few seconds ahead (the worker checks every 0.2 s; a loaded machine
        # may be slower, and a version that took effect before the worker read it is refused)
        change = datetime.now(UTC) + seconds(8)
        accepted = versioned(change, review=6)
        env.policy.write_text(accepted)

        async def reloaded() -> bool:
            return await taken("taken") == 1

        await wait_for(reloaded, "the worker to take the new version", 15, workers=[worker])
        await asyncio.sleep(max(0.0, (change - datetime.now(UTC)).total_seconds()) + 0.1)
        after = await feed.request("o-2", "c-2")  # under the 6 s review
        until = datetime.now(UTC) + seconds(12)
        # the same file read by replay from its first line gives the same answers
        accepted_file = env.folder / "accepted.yaml"
        accepted_file.write_text(accepted)
        expected = replay_of(feed.sent, accepted_file, env.folder, until)
        live = await replays_answers(env.prefix, expected, worker)
        approvals = {
            a["case_id"]: a for a in live["aftersale-actions"] if a["type"] == "auto_approve"
        }
        review = {
            case: parse_time(approvals[case]["deadline_at"]) - parse_time(sent["occurred_at"])
            for case, sent in (("c-1", before), ("c-2", after))
        }
        assert review == {"c-1": seconds(3), "c-2": seconds(6)}

        # editing the version in force would move running cases: refused, the worker goes on
        env.policy.write_text(versioned(change, review=1))

        async def refused() -> bool:
            return await taken("refused") == 1

        await wait_for(refused, "the worker to refuse the edit", 15, workers=[worker])
        assert "is not taken: a version in force changed" in worker.log.read_text()
        third_request = await feed.request("o-3", "c-3")
        still = await outputs_once_there(
            env.prefix,
            lambda out: not any(a["case_id"] == "c-3" for a in out["aftersale-actions"]),
            "c-3's auto-approval",
            workers=[worker],
            within=60,
        )
        # under the version in force: approved 6 s after the request (then, later, closed)
        (third,) = (
            a
            for a in still["aftersale-actions"]
            if a["case_id"] == "c-3" and a["rule"] == "merchant_review"
        )
        assert third["type"] == "auto_approve"
        waited = parse_time(third["deadline_at"]) - parse_time(third_request["occurred_at"])
        assert waited == seconds(6)
    assert worker.exited() is None
