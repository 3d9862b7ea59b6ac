"""The worker across outages, pauses, kill -9 and a second worker: each action once, none early."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import Callable

from tests.integration.worker_harness import Env, Feeder, WorkerProcess, read_outputs


def action_ids(outputs: dict[str, list[dict[str, object]]]) -> Counter[str]:
    return Counter(str(a["action_id"]) for a in outputs["aftersale-actions"])


async def actions_once_all_there(
    prefix: str, expected: set[str], limit: float = 90.0
) -> Counter[str]:
    """Read the actions until every expected one is there (or `limit`), then once more, settled.

    A worker taking over partitions first waits for the leaver's open transactions to be
    aborted (seconds), so a fixed sleep would measure the broker's timeout, not the worker.
    """
    deadline = asyncio.get_running_loop().time() + limit
    seen: Counter[str] = Counter()
    while asyncio.get_running_loop().time() < deadline and not expected <= set(seen):
        seen = action_ids(await read_outputs(prefix, settle=1.0))
    return action_ids(await read_outputs(prefix, settle=3.0))


async def test_outage_backlog_is_read_before_deadlines_are_judged(
    env: Env, workers: Callable[..., WorkerProcess]
) -> None:
    order = f"{env.prefix}o-1"
    async with Feeder(env.prefix) as feed:
        await feed.request(order, "c-1")
        # A backlog between the request and its in-time approval, on the same partition.
        for n in range(1500):
            await feed.send("aftersale.escalated", order, f"c-unknown-{n}")
        await feed.send("aftersale.approved", order, "c-1")
        await asyncio.sleep(4)  # merchant_review (3 s) is past on the wall clock
    worker = workers()
    worker.start()
    await worker.wait_ready()
    await asyncio.sleep(8)
    live = await read_outputs(env.prefix)
    assert action_ids(live) == Counter({"c-1:buyer_return": 1}), worker.tail()
    assert len(live["aftersale-deadletter"]) == 1500


async def test_a_paused_worker_does_not_act_on_stale_input(
    env: Env, workers: Callable[..., WorkerProcess]
) -> None:
    worker = workers()
    worker.start()
    await worker.wait_ready()
    order = f"{env.prefix}o-1"
    async with Feeder(env.prefix) as feed:
        await feed.request(order, "c-1")
        await asyncio.sleep(0.5)
        worker.send_signal(signal.SIGSTOP)
        await feed.send("aftersale.approved", order, "c-1")  # in time, but unread
        await asyncio.sleep(5)  # the deadline passes while the worker is frozen
        worker.send_signal(signal.SIGCONT)
    await asyncio.sleep(8)
    live = await read_outputs(env.prefix)
    assert action_ids(live) == Counter({"c-1:buyer_return": 1}), worker.tail()
    assert live["aftersale-deadletter"] == []


def assert_repeats_identical(outputs: dict[str, list[dict[str, object]]]) -> None:
    """An action written twice must be the same action: same type, deadline and amount."""
    by_id: dict[str, set[tuple[object, ...]]] = {}
    for action in outputs["aftersale-actions"]:
        by_id.setdefault(str(action["action_id"]), set()).add(
            (action["type"], action["deadline_at"], action["amount"])
        )
    assert all(len(variants) == 1 for variants in by_id.values())


async def feed_cases(feed: Feeder, cases: int, spread: float) -> set[str]:
    """`cases` unanswered return requests over `spread` seconds: 2 actions each."""
    expected: set[str] = set()
    for n in range(cases):
        await feed.request(f"{feed.prefix}o-{n}", f"c-{n}")
        expected |= {f"c-{n}:merchant_review", f"c-{n}:buyer_return"}
        await asyncio.sleep(spread / cases)
    return expected


async def test_kill_9_then_restart_loses_no_action(
    env: Env, workers: Callable[..., WorkerProcess]
) -> None:
    """Every action is there after kill -9 and restart, and a repeat is the identical record.

    Known gap (issue 3 stays open): faust commits the table's changelog and the outputs in
    different transactions, so a kill -9 between the two can repeat an action (0-2 of 120 in
    our runs). Repeats keep their deterministic action_id and deadline_at, so a consumer that
    deduplicates on action_id sees each action once.
    """
    worker = workers()
    worker.start()
    await worker.wait_ready()
    async with Feeder(env.prefix) as feed:
        expected = await feed_cases(feed, 60, 6.0)
    worker.stop(signal.SIGKILL)  # mid-run: about half the deadlines have fired
    worker.start()
    await worker.wait_ready()
    seen = await actions_once_all_there(env.prefix, expected)
    assert set(seen) == expected, worker.tail()
    assert_repeats_identical(await read_outputs(env.prefix, settle=1.0))


async def test_two_workers_split_partitions_and_survive_a_rebalance(
    env: Env, workers: Callable[..., WorkerProcess]
) -> None:
    first, second = workers("w1"), workers("w2")
    first.start()
    second.start()
    await first.wait_ready()
    await second.wait_ready()
    async with Feeder(env.prefix) as feed:
        expected = await feed_cases(feed, 40, 4.0)
        second.stop()  # a rebalance while deadlines are pending
    seen = await actions_once_all_there(env.prefix, expected)
    assert set(seen) == expected, first.tail()
    # the same known gap as kill -9 (see above) applies to a worker leaving mid-transaction
    assert_repeats_identical(await read_outputs(env.prefix, settle=1.0))
    assert b"Worker ready" in second.log.read_bytes()
