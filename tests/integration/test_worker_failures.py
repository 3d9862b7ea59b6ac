"""The worker across outages, pauses, kill -9 and a second worker: each action once, none early."""

from __future__ import annotations

import asyncio
import re
import signal
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from aiokafka.structs import TopicPartition

from streams.contract.times import parse_time
from tests.integration.worker_harness import (
    INPUTS,
    PARTITIONS,
    Env,
    Feeder,
    Outputs,
    WorkerProcess,
    outputs_once_there,
    read_outputs,
    seconds,
    split_between_two,
    wait_caught_up,
    wait_for,
    wait_for_outputs,
)


def action_ids(outputs: dict[str, list[dict[str, object]]]) -> Counter[str]:
    return Counter(str(a["action_id"]) for a in outputs["aftersale-actions"])


async def actions_once_all_there(
    prefix: str, expected: set[str], workers: Iterable[WorkerProcess], within: float = 90.0
) -> Counter[str]:
    """Read the actions until every expected one is there (failing, with the workers' log
    tails, after `within` s), then once more, settled.

    A worker taking over partitions first waits for the leaver's open transactions to be
    aborted (seconds), so a fixed sleep would measure the broker's timeout, not the worker.
    """

    def missing(live: Outputs) -> list[str]:
        return sorted(expected - set(action_ids(live)))

    live = await outputs_once_there(
        prefix, missing, f"{len(expected)} actions", workers=workers, within=within
    )
    return action_ids(live)


async def test_outage_backlog_is_read_before_deadlines_are_judged(
    env: Env, workers: Callable[..., WorkerProcess]
) -> None:
    order = f"{env.prefix}o-1"
    async with Feeder(env.prefix) as feed:
        request = await feed.request(order, "c-1")
        # A backlog between the request and its in-time approval, on the same partition.
        for n in range(1500):
            await feed.send("aftersale.escalated", order, f"c-unknown-{n}")
        # in time (merchant_review: 3 s) however long a busy machine took to write the backlog
        in_time = min(datetime.now(UTC), parse_time(request["occurred_at"]) + seconds(2))
        await feed.send("aftersale.approved", order, "c-1", at=in_time)
        # Scenario, not waiting: the worker starts only once the deadline is past.
        await asyncio.sleep(4)  # merchant_review (3 s) is past on the wall clock
    worker = workers()
    worker.start()
    await worker.wait_ready()

    def missing(live: Outputs) -> list[str]:
        dead = len(live["aftersale-deadletter"])
        gaps = [f"{1500 - dead} of 1500 dead letters"] if dead < 1500 else []
        return gaps + sorted({"c-1:buyer_return"} - set(action_ids(live)))

    live = await outputs_once_there(
        env.prefix, missing, "the backlog's dead letters and c-1's auto_close", workers=[worker]
    )
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
        request = await feed.request(order, "c-1")
        # the worker has read the request (its deadline is scheduled) before it freezes
        await wait_caught_up(env.prefix, env.app_id, workers=[worker])
        worker.send_signal(signal.SIGSTOP)
        approval = await feed.send("aftersale.approved", order, "c-1")  # in time, but unread
        # Scenario, not waiting: the deadline passes on the wall clock while the worker is frozen.
        await asyncio.sleep(5)
        worker.send_signal(signal.SIGCONT)
    due = parse_time(request["occurred_at"]) + seconds(3)
    assert parse_time(approval["occurred_at"]) < due, "set-up too slow: the approval came late"

    def missing(live: Outputs) -> list[str]:
        return sorted({"c-1:buyer_return"} - set(action_ids(live)))

    live = await outputs_once_there(env.prefix, missing, "c-1's auto_close", workers=[worker])
    assert action_ids(live) == Counter({"c-1:buyer_return": 1}), worker.tail()
    assert live["aftersale-deadletter"] == []


async def feed_cases(feed: Feeder, cases: int, spread: float, first: int = 0) -> set[str]:
    """`cases` unanswered return requests over `spread` seconds: 2 actions each."""
    expected: set[str] = set()
    for n in range(first, first + cases):
        await feed.request(f"{feed.prefix}o-{n}", f"c-{n}")
        expected |= {f"c-{n}:merchant_review", f"c-{n}:buyer_return"}
        # Scenario, not waiting: spaced requests spread their deadlines over time, so that a
        # kill or a rebalance falls while some have fired and others are still pending.
        await asyncio.sleep(spread / cases)
    return expected


FROM_DISK = re.compile(rb"partition (\d+): \d+ orders, .* \(read from the on-disk index;")
INDEXED = re.compile(rb"partition (\d+): (?:\d+ orders, |due index kept)")
RESTORED = re.compile(rb"partition \d+: (\d+) orders, .* \(read from the on-disk index;")


async def indexed_from_disk(worker: WorkerProcess) -> set[int]:
    """Wait until the worker's current run has indexed every partition (logged by its first
    timer run, after faust's "Worker ready"); the partitions whose due index it read from
    disk (none may have been rebuilt from the table)."""

    async def every_partition() -> bytes | None:
        log = worker.log.read_bytes()
        indexed = {int(p) for p in INDEXED.findall(log)}
        return log if indexed >= set(range(PARTITIONS)) else None

    log = await wait_for(
        every_partition, f"{worker.log} to index every partition", 60, workers=[worker]
    )
    assert b"rebuilt from the table" not in log, worker.tail()
    return {int(p) for p in FROM_DISK.findall(log)}


async def test_kill_9_mid_run_then_restart_gives_every_action_exactly_once(
    env: Env, workers: Callable[..., WorkerProcess]
) -> None:
    """kill -9 twice while deadlines fire, restart each time: each action once, none lost.

    State changes, outputs and input offsets share one transaction per partition, and the
    local store only holds committed state (`streams/outbox.py`), so a kill at any instant
    leaves either all of a record's consequences or none of them.
    """
    worker = workers()
    worker.start()
    await worker.wait_ready()
    async with Feeder(env.prefix) as feed:
        expected = await feed_cases(feed, 40, 4.0)
        worker.stop(signal.SIGKILL)  # the first deadlines are firing
        worker.start()
        second_half = await feed_cases(feed, 40, 4.0, first=40)
        expected |= second_half
    await worker.wait_ready()

    def none_of_the_second_half(live: Outputs) -> list[str]:
        return [] if second_half & set(action_ids(live)) else ["any action of c-40...c-79"]

    await wait_for_outputs(
        env.prefix,
        none_of_the_second_half,
        "the restarted worker to fire deadlines of the second half",
        workers=[worker],
    )
    worker.stop(signal.SIGKILL)  # the second half of the deadlines is firing
    worker.start()
    await worker.wait_ready()
    # the restart read its due index from disk, kept current through the changelog records
    # it restored, rather than from every order of the table
    assert await indexed_from_disk(worker) == set(range(PARTITIONS)), worker.tail()
    seen = await actions_once_all_there(env.prefix, expected, [worker])
    assert set(seen) == expected, worker.tail()
    assert set(seen.values()) == {1}, [a for a, n in seen.items() if n > 1]
    reminders = Counter(
        str(n["notification_id"])
        for n in (await read_outputs(env.prefix))["aftersale-notifications"]
    )
    assert len(reminders) == 160  # two reminders per case: 1.5 s and 1 s before
    assert set(reminders.values()) == {1}, [r for r, n in reminders.items() if n > 1]


async def test_two_workers_split_partitions_and_survive_a_rebalance(
    env: Env, workers: Callable[..., WorkerProcess]
) -> None:
    first, second = workers("w1"), workers("w2")
    first.start()
    second.start()
    await first.wait_ready()
    await second.wait_ready()
    # "Worker ready" can come before the second member has joined: wait for the group to settle
    held = await split_between_two(env, [first, second])
    async with Feeder(env.prefix) as feed:
        expected = await feed_cases(feed, 40, 4.0)
        second.stop()  # a rebalance while deadlines are pending
    seen = await actions_once_all_there(env.prefix, expected, [first])
    assert set(seen) == expected, first.tail()
    assert set(seen.values()) == {1}, [a for a, n in seen.items() if n > 1]
    # The first took the second's partitions over by restoring their changelogs, and the
    # restore kept the due index on disk current: read from there, not rebuilt from the table.
    assert await indexed_from_disk(first) == set(range(PARTITIONS)), first.tail()
    assert max(int(n) for n in RESTORED.findall(first.log.read_bytes())) > 0, first.tail()
    # Before the second stopped, the two workers split the input partitions between them.
    inputs = {TopicPartition(env.prefix + t, p) for t in INPUTS for p in range(PARTITIONS)}
    assert len(held) == 2, held
    assert all(held.values()), held
    assert set.union(*held.values()) == inputs, held
    assert not set.intersection(*held.values()), held


async def test_deadlines_fire_when_upstream_writes_in_transactions(
    env: Env, workers: Callable[..., WorkerProcess]
) -> None:
    """A transaction's commit marker takes an offset no record has: the end offset of an idle
    partition is then one past the last record, and the worker must still see it caught up."""
    worker = workers()
    worker.start()
    await worker.wait_ready()
    order = f"{env.prefix}o-1"
    async with Feeder(env.prefix, transactional=True) as feed:
        await feed.request(order, "c-1")
    seen = await actions_once_all_there(
        env.prefix, {"c-1:merchant_review", "c-1:buyer_return"}, [worker]
    )
    assert seen == Counter({"c-1:merchant_review": 1, "c-1:buyer_return": 1}), worker.tail()
