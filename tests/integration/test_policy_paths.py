"""The worker and replay agree under a policy that uses every rule of issue 17 at once: a
version that takes effect mid-run, a freeze, the review of a refund before shipment, and a
limit on an order's cases."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from streams.contract.times import format_time, parse_time
from tests.integration.test_worker import replays_answers
from tests.integration.worker_harness import (
    Env,
    Feeder,
    WorkerProcess,
    replay_of,
    seconds,
)


def policy_text(start: datetime) -> str:
    """Fast deadlines (seconds), a 1 s freeze from `start` + 1 s, and a 5 s review for the
    requests from `start` + 6 s on."""
    return (
        f"freezes: [{{from: '{format_time(start + seconds(1))}', "
        f"to: '{format_time(start + seconds(2))}'}}]\n"
        "versions:\n"
        "  - deadlines: {merchant_review: 3, buyer_return: 4, merchant_receipt: 4,"
        " unshipped_review: 2}\n"
        "    reminders: {merchant_review: [1.5], buyer_return: [1], merchant_receipt: [1],"
        " unshipped_review: [1]}\n"
        "    max_cases_per_order: 2\n"
        f"  - effective_from: '{format_time(start + seconds(6))}'\n"
        "    deadlines: {merchant_review: 5}\n"
    )


async def test_every_new_rule_gives_the_worker_replays_answers(
    env: Env, workers: Callable[..., WorkerProcess]
) -> None:
    start = datetime.now(UTC) + seconds(20)  # the worker is ready well before
    env.policy.write_text(policy_text(start))
    worker = workers()
    worker.start()
    await worker.wait_ready()
    await asyncio.sleep(max(0.0, (start - datetime.now(UTC)).total_seconds()))
    async with Feeder(env.prefix) as feed:
        for order in ("o-1", "o-2", "o-3", "o-4"):
            await feed.send("order.paid", order, merchant_id="m-1", buyer_id="b-1", amount=5990)
        await feed.send("order.shipped", "o-2", carrier="SF", waybill="SF1")
        unshipped = await feed.request("o-1", "c-1", kind="refund_only")  # 2 s + the freeze
        shipped = await feed.request("o-2", "c-2", kind="refund_only")  # 3 s + the freeze
        await feed.request("o-3", "c-3a")
        await feed.send("aftersale.rejected", "o-3", "c-3a")
        await feed.request("o-3", "c-3b")
        await feed.send("aftersale.withdrawn", "o-3", "c-3b")
        await feed.request("o-3", "c-3c")  # a third case: over the limit
        await asyncio.sleep(max(0.0, (start + seconds(6.5) - datetime.now(UTC)).total_seconds()))
        later = await feed.request("o-4", "c-4")  # under the second version: 5 s
    until = datetime.now(UTC) + seconds(15)
    expected = replay_of(feed.sent, env.policy, env.folder, until)
    live = await replays_answers(env.prefix, expected, worker)
    fired = {(a["case_id"], a["rule"]): a for a in live["aftersale-actions"]}

    def waited(case: str, rule: str, request: dict[str, str]) -> float:
        due = parse_time(fired[(case, rule)]["deadline_at"])
        return (due - parse_time(request["occurred_at"])).total_seconds()

    assert fired[("c-1", "unshipped_review")]["type"] == "auto_refund"
    assert 2.0 < waited("c-1", "unshipped_review", unshipped) <= 3.0  # 2 s, the freeze in it
    assert fired[("c-2", "merchant_review")]["type"] == "auto_refund"
    assert 3.0 < waited("c-2", "merchant_review", shipped) <= 4.0
    assert waited("c-4", "merchant_review", later) == 5.0
    assert [d["error"] for d in live["aftersale-deadletter"]] == ["case_limit_reached"]
    assert worker.errors() == []
