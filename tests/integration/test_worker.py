"""`aftersale worker` on the real broker: the same answers as replay, bad input, order of firing."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from streams.contract.times import parse_time
from tests.integration.worker_harness import (
    Env,
    Feeder,
    Outputs,
    WorkerProcess,
    not_yet_in,
    outputs_once_there,
    read_outputs,
    replay_of,
    seconds,
    wait_for_outputs,
)


def ids(records: list[dict[str, Any]], key: str) -> list[str]:
    return sorted(r[key] for r in records)


def answers(outputs: dict[str, list[Any]]) -> dict[str, Any]:
    return {
        "actions": sorted(
            (a["action_id"], a["type"], a["deadline_at"]) for a in outputs["aftersale-actions"]
        ),
        "reminders": sorted(
            (n["notification_id"], n["remind_at"]) for n in outputs["aftersale-notifications"]
        ),
        "dead letters": sorted(d["error"] for d in outputs["aftersale-deadletter"]),
    }  # fmt: skip


async def replays_answers(
    prefix: str, expected: dict[str, list[Any]], worker: WorkerProcess
) -> Outputs:
    """The worker's committed outputs once they hold replay's answers (`expected`), read
    once more from the start: the same answers, nothing more, nothing twice."""

    def missing(live: Outputs) -> dict[str, list[Any]]:
        return not_yet_in(answers(expected), answers(live))

    live = await outputs_once_there(
        prefix, missing, "replay's answers", workers=[worker], within=60
    )
    assert answers(live) == answers(expected), worker.tail()
    return live


async def scenario(feed: Feeder) -> None:
    """Every rule, escalation, a duplicate, a late answer and bad input, on a 3 s/4 s policy.

    The sleeps space the records in time: each record is stamped when sent, so they set where
    an answer falls relative to its case's deadline (the last one late), for replay as well.
    """

    def o(n: int) -> str:
        return f"{feed.prefix}o-{n}"

    await feed.send("order.paid", o(1), merchant_id="m-1", buyer_id="b-1", amount=5990)
    first = await feed.request(o(1), "c-1")  # no answer: auto_approve, then auto_close
    await feed.request(o(2), "c-2", kind="refund_only")  # no answer: auto_refund
    await feed.request(o(3), "c-3")  # approved, shipped, never received: auto_refund
    await feed.request(o(4), "c-4")  # escalated, resumed
    await feed.raw("aftersale.requested", b"{not json", o(9).encode())
    await feed.raw("aftersale.x", b'{"type": "aftersale.nope"}', o(9).encode())
    await feed.send("aftersale.approved", o(5), "c-nowhere")  # unknown_case
    await feed.raw("aftersale.requested", orjson.dumps(first), o(1).encode())  # a retry
    await asyncio.sleep(0.5)
    await feed.send("aftersale.approved", o(3), "c-3")
    await asyncio.sleep(0.5)
    await feed.send("aftersale.escalated", o(4), "c-4")
    await asyncio.sleep(1.0)
    await feed.send("aftersale.return_shipped", o(3), "c-3", carrier="SF", waybill="SF1")
    await asyncio.sleep(2.0)
    await feed.send("aftersale.resolved", o(4), "c-4", decision="resume")
    await asyncio.sleep(0.5)
    await feed.send("aftersale.approved", o(1), "c-1")  # late: the deadline decided at 3 s


async def test_same_answers_as_replay(env: Env, workers: Callable[..., WorkerProcess]) -> None:
    worker = workers()
    worker.start()
    await worker.wait_ready()
    async with Feeder(env.prefix) as feed:
        await scenario(feed)
    until = datetime.now(UTC) + seconds(12)  # every deadline of the scenario is due by then
    expected = replay_of(feed.sent, env.policy, env.folder, until)
    live = await replays_answers(env.prefix, expected, worker)
    assert len(answers(live)["actions"]) == 6  # c-1 x2, c-2, c-3, c-4 x2
    for action in live["aftersale-actions"]:
        assert parse_time(action["fired_at"]) >= parse_time(action["deadline_at"])
    assert worker.errors() == []


async def test_bad_input_is_dead_lettered_with_its_bytes(
    env: Env, workers: Callable[..., WorkerProcess]
) -> None:
    worker = workers()
    worker.start()
    await worker.wait_ready()
    bad = [
        ("aftersale.requested", b"\xff\xfe not json"),
        ("aftersale.requested", b'{"type": "aftersale.requested", "order_id": "x"}'),
        ("order.paid", b'{"type": "order.refunded", "event_id": "1", "order_id": "x"}'),
    ]
    async with Feeder(env.prefix) as feed:
        for kind, value in bad:
            await feed.raw(kind, value, b"x")
        await feed.raw("order.paid", None, b"tombstone")  # a null value
        await feed.send("aftersale.received", f"{env.prefix}o-1", "c-1")  # unknown_case
        await feed.request(f"{env.prefix}o-2", "c-2")
        await feed.send("aftersale.received", f"{env.prefix}o-2", "c-2")  # invalid_transition
        # valid records keyed otherwise than by their order_id, or not at all: Kafka placed
        # them away from their order's state
        keyless = await feed.request(f"{env.prefix}o-4", "c-4", key=None)
        await feed.request(f"{env.prefix}o-5", "c-5", key=f"{env.prefix}o-6".encode())
        await feed.request(f"{env.prefix}o-3", "c-3", kind="refund_only")  # still served after

    def missing(live: Outputs) -> list[str]:
        dead = len(live["aftersale-deadletter"])
        gaps = [f"{8 - dead} of 8 dead letters"] if dead < 8 else []
        if "c-3:merchant_review" not in ids(live["aftersale-actions"], "action_id"):
            gaps.append("action c-3:merchant_review")
        return gaps

    keyed = await outputs_once_there(
        env.prefix,
        missing,
        "8 dead letters (5 codes, 1 tombstone, 2 wrong keys) and c-3's auto_refund",
        workers=[worker],
        keys=True,
    )
    live = {topic: [value for _, value in records] for topic, records in keyed.items()}
    # one record of each code but the key's (partitions interleave, so compare by code)
    wrong_key = [
        (key, d)
        for key, d in keyed["aftersale-deadletter"]
        if d["detail"].startswith(("record has no key", "record key"))
    ]
    tombstones = [(key, d) for key, d in keyed["aftersale-deadletter"] if key == b"tombstone"]
    others = [
        d for key, d in keyed["aftersale-deadletter"] if (key, d) not in wrong_key + tombstones
    ]
    dead = {d["error"]: d for d in others}
    assert len(others) == len(dead)
    assert [(d["error"], d["original"], d["original_base64"]) for _, d in tombstones] == [
        ("malformed_json", "", "")
    ]
    assert tombstones[0][1]["topic"] == f"{env.prefix}order-events"
    assert sorted(dead) == [
        "invalid_transition",
        "malformed_json",
        "schema_violation",
        "unknown_case",
        "unknown_type",
    ]
    # refused with schema_violation, keyed by their order_id, and nothing else came of them
    assert sorted((key, d["error"]) for key, d in wrong_key) == [
        (f"{env.prefix}o-4".encode(), "schema_violation"),
        (f"{env.prefix}o-5".encode(), "schema_violation"),
    ]
    assert orjson.loads(dict(wrong_key)[f"{env.prefix}o-4".encode()]["original"]) == keyless
    actions = ids(live["aftersale-actions"], "action_id")
    assert not any(a.startswith(("c-4:", "c-5:")) for a in actions)
    assert base64.b64decode(dead["malformed_json"]["original_base64"]) == bad[0][1]
    assert dead["malformed_json"]["original"] is None
    assert dead["schema_violation"]["original"] == bad[1][1].decode()
    assert dead["schema_violation"]["topic"] == f"{env.prefix}aftersale-events"
    assert dead["unknown_type"]["topic"] == f"{env.prefix}order-events"
    assert isinstance(dead["schema_violation"]["offset"], int)
    assert isinstance(dead["schema_violation"]["partition"], int)
    assert "c-3:merchant_review" in ids(live["aftersale-actions"], "action_id")


async def test_a_waybill_after_a_due_deadline_finds_it_fired_before_the_timer_ticks(
    env: Env, workers: Callable[..., WorkerProcess]
) -> None:
    # Both records are written back to back and held for their turn in input order until the
    # timer's next end-offset sample; the timer then judges them before it ticks for any due
    # deadline. So only the waybill itself can fire the review deadline that was due before
    # it: had it not, the waybill would find the case still in review and be refused.
    worker = workers()
    worker.start()
    await worker.wait_ready()
    now = datetime.now(UTC)
    order = f"{env.prefix}o-1"
    async with Feeder(env.prefix) as feed:
        # merchant_review was due 2 s ago
        await feed.request(order, "c-1", at=now - seconds(5))
        await feed.send(
            "aftersale.return_shipped", order, "c-1", at=now, carrier="SF", waybill="SF1"
        )

    def missing(live: Outputs) -> list[str]:
        rules = [a["rule"] for a in live["aftersale-actions"]]
        return [] if "merchant_receipt" in rules else ["merchant_receipt's auto_refund"]

    # the waybill accepted starts merchant_receipt (4 s): its auto_refund shows it
    await wait_for_outputs(env.prefix, missing, "c-1's auto_refund", workers=[worker])
    live = await read_outputs(env.prefix)
    assert [(a["type"], a["rule"]) for a in live["aftersale-actions"]] == [
        ("auto_approve", "merchant_review"),
        ("auto_refund", "merchant_receipt"),
    ]
    assert live["aftersale-deadletter"] == []
