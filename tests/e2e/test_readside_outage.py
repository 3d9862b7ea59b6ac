"""Issue #15: the read side's Redis stopped mid-run and restarted.

A worker (status feed on) and an `aftersale project` process pointed at a redis-server of the
test's own (AOF, fsync always: SIGKILL loses nothing it acknowledged) run while a simulated
stream is produced live. Once deadlines fire, the redis-server is killed (SIGKILL) and kept
down for several seconds while the stream and its deadlines keep flowing, then restarted on
the same folder. Afterwards:

- Redis holds exactly the projection of the worker's committed status feed, with the feed's
  last offsets (each record applied once across the outage);
- every order in Redis says what replay says of the same input (read back from the topics,
  in the order the broker appended it) at the end: the same orders, merchants, paid and
  refunded flags, cases with their phase, outcome, running or paused deadline and history
  (all but `fired_at`, the wall clock's instant an auto-action was taken), the same daily
  merchant counts;
- the auto-actions whose deadline fell inside the outage were as punctual as the others:
  the worker does not wait for the read side.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from streams.contract.times import parse_time
from streams.errors import ContractError
from streams.readside.projection import Projection, decode_record
from streams.readside.redis_store import RedisStore
from streams.rules.policy import load_policy
from streams.tools.replay import STATUS_FILE, replay
from tests.chaos.judge import InputRecord, append_order
from tests.integration.endpoints import BOOTSTRAP
from tests.integration.test_readside import (
    ProjectorProcess,
    RedisServer,
    StatusTopic,
    assert_redis_is_the_projection,
    caught_up,
    logged,
)
from tests.integration.worker_harness import (
    INPUTS,
    PARTITIONS,
    Outputs,
    WorkerProcess,
    brief,
    create_contract_topics,
    not_yet_in,
    outputs_once_there,
    wait_for,
    wait_for_outputs,
)

SCALE = "57600"  # 1 s of wall time = 16 h of business time: merchant_review 3 s, the others 15 s
ORDERS = "120"  # seed 15: 44 cases, 23 auto-actions due 4-37 s into the story
OUTAGE_S = 8.0  # how long Redis stays down
LATE_S = 2.0  # every auto-action fires within this of its deadline, in the outage or not
IN_OUTAGE = 3  # at least this many auto-actions fall due while Redis is down
LOG_APPEND_TIME = 1  # a Kafka record's timestamp type: the broker's append time


def cli(*args: str, env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "streams", *args], env=env, check=True, capture_output=True,
        timeout=120,
    )  # fmt: skip


def lateness(action: dict[str, Any]) -> float:
    return (parse_time(action["fired_at"]) - parse_time(action["deadline_at"])).total_seconds()


async def read_inputs(prefix: str) -> list[InputRecord]:
    """Both input topics as the broker holds them, with their append times."""
    tps = [TopicPartition(prefix + t, p) for t in INPUTS for p in range(PARTITIONS)]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=BOOTSTRAP, isolation_level="read_committed", enable_auto_commit=False
    )
    await consumer.start()
    records: list[InputRecord] = []
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            for tp, messages in (await consumer.getmany(timeout_ms=500)).items():
                for m in messages:
                    assert m.timestamp_type == LOG_APPEND_TIME, tp
                    if m.value is not None:  # a tombstone has no line in replay's input
                        topic = tp.topic.removeprefix(prefix)
                        records.append(InputRecord(topic, tp.partition, m.offset, m.timestamp,
                                                   m.value))  # fmt: skip
    finally:
        await consumer.stop()
    return records


async def read_status(status: StatusTopic) -> None:
    """Project every committed record of the worker's status topic into `status.projection`
    (with its offsets, as `StatusTopic.write` does for the records it wrote)."""
    tps = [TopicPartition(status.name, p) for p in range(PARTITIONS)]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=BOOTSTRAP, isolation_level="read_committed", enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            for tp, messages in (await consumer.getmany(timeout_ms=500)).items():
                for m in messages:
                    try:
                        record = decode_record(m.value or b"")
                    except ContractError:
                        offsets = status.projection.offsets
                        offsets[tp.partition] = max(offsets.get(tp.partition, -1), m.offset)
                        continue
                    assert status.projection.apply(record, tp.partition, m.offset)
                    status.committed += 1
    finally:
        await consumer.stop()


def without_firing_times(orders: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The orders as replay and the live worker must agree on them: each history entry less
    its `fired_at` (replay takes an auto-action at its deadline, the worker when it fires)."""
    out = {}
    for order_id, order in orders.items():
        cases = {
            case_id: {**case, "history": [{**h, "fired_at": None} for h in case["history"]]}
            for case_id, case in order["cases"].items()
        }
        out[order_id] = {"meta": order["meta"], "cases": cases}
    return out


async def test_redis_stopped_mid_run_delays_no_action_and_ends_as_replays_state(
    tmp_path: Path, unique: str
) -> None:
    prefix, app_id = f"{unique}-", f"{unique}-app"
    env = dict(os.environ, AFTERSALE_KAFKA_BOOTSTRAP=BOOTSTRAP, AFTERSALE_TOPIC_PREFIX=prefix)
    await create_contract_topics(prefix)
    policy = tmp_path / "policy.yaml"
    story = ["--orders", ORDERS, "--seed", "15", "--time-scale", SCALE, "--span", "P4D"]
    cli("simulate", "--orders", "0", "--time-scale", SCALE, "--policy-out", str(policy),
        "--out", os.devnull, env=env)  # fmt: skip

    redis_server = RedisServer(tmp_path / "redis")
    await redis_server.start()
    worker = WorkerProcess(prefix, app_id, policy, tmp_path / "worker")
    worker.folder.mkdir()
    projector = ProjectorProcess(app_id, redis_server.url, tmp_path)
    client = aioredis.from_url(redis_server.url)
    status = StatusTopic(app_id)  # the worker's <app id>-status, read back at the end
    store = RedisStore(client, f"{app_id}:", status.name)
    producer: asyncio.subprocess.Process | None = None
    worker.start()
    try:
        await worker.wait_ready()
        projector.start()
        await logged(projector, "resuming after the offsets in Redis", within=60)
        # the story starts now, produced live (each record at its occurred_at)
        producer = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "streams", "simulate", *story, "--policy", str(policy),
            "--live", env=env, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip

        # deadlines fire, and the projector writes the feed to Redis: stop Redis now
        await wait_for_outputs(
            prefix, lambda out: not out["aftersale-actions"], "a first auto-action",
            workers=[worker], within=60,
        )  # fmt: skip

        async def applied_some() -> bool:
            offsets = await store.stored_offsets(range(PARTITIONS))
            return any(o >= 0 for o in offsets.values())

        await wait_for(applied_some, projector.tail, 30.0, workers=[worker])
        before = await store.stored_offsets(range(PARTITIONS))
        down_at = datetime.now(UTC)
        redis_server.kill()
        await logged(projector, "is unavailable", within=OUTAGE_S)
        elapsed = (datetime.now(UTC) - down_at).total_seconds()
        await asyncio.sleep(OUTAGE_S - elapsed)  # the outage itself: the stream flows on
        assert projector.alive(), projector.tail()
        await redis_server.start()  # the same folder: its AOF is read back
        up_at = datetime.now(UTC)
        await client.connection_pool.disconnect()  # the test's own client: its old connections
        after = await store.stored_offsets(range(PARTITIONS))
        assert all(after[p] >= before[p] for p in before), (before, after)  # nothing lost

        _, err = await producer.communicate()
        assert producer.returncode == 0, err.decode()
        # replay of the input as the broker appended it, to the end of every deadline
        inputs = append_order(await read_inputs(prefix))
        assert all(b"\n" not in r.value for r in inputs)
        events = tmp_path / "input-in-append-order.jsonl"
        events.write_bytes(b"".join(r.value + b"\n" for r in inputs))
        end = max(r.appended for r in inputs) + timedelta(days=1)
        replay(events, tmp_path / "replay", load_policy(policy), end, status=True)
        replayed = [
            orjson.loads(line)
            for line in (tmp_path / "replay" / "actions.jsonl").read_bytes().splitlines()
        ]
        wanted = {"actions": sorted(a["action_id"] for a in replayed)}

        def missing(live: Outputs) -> object:
            return not_yet_in(
                wanted, {"actions": [a["action_id"] for a in live["aftersale-actions"]]}
            )

        last_due = max(parse_time(a["deadline_at"]) for a in replayed)
        live = await outputs_once_there(
            prefix, missing, "replay's actions", workers=[worker],
            within=(last_due - datetime.now(UTC)).total_seconds() + 30,
        )  # fmt: skip
        worker.stop()  # its status feed is complete: read it back
        assert worker.errors() == [], worker.tail()

        # Redis is the projection of the committed feed, to its last offsets
        await read_status(status)
        await caught_up(store, status, projector, within=60)
        await assert_redis_is_the_projection(store, status)

        # ... and says what replay says of every order
        expected = Projection().apply_all(
            decode_record(line)
            for line in (tmp_path / "replay" / STATUS_FILE).read_bytes().splitlines()
        )
        want = expected.snapshot()
        held = await store.dump()
        assert held.orders.keys() - want.orders.keys() == set()
        assert want.orders.keys() - held.orders.keys() == set()
        assert len(held.orders) == int(ORDERS)  # every order, each paid
        ours, theirs = without_firing_times(held.orders), without_firing_times(want.orders)
        differ = sorted(o for o in theirs if ours[o] != theirs[o])
        assert not differ, (
            f"{len(differ)} orders differ from replay's: {differ[:5]}; the first in Redis "
            f"{brief(ours[differ[0]])}, in replay {brief(theirs[differ[0]])}"
        )
        assert held.counts == want.counts

        assert projector.kill(signal.SIGTERM) == 0, projector.tail()
    finally:
        if producer is not None and producer.returncode is None:
            producer.kill()
            await producer.wait()
        worker.stop()
        if projector.alive():
            projector.kill(signal.SIGKILL)
        await client.aclose()
        redis_server.stop()

    # the projector saw the outage, and said so
    logs = projector.logs()
    assert "is unavailable" in logs
    assert "is back after" in logs
    assert "Redis lost applied records" not in logs  # it came back with its data
    # no auto-action was delayed by it
    actions = live["aftersale-actions"]
    assert sorted(a["action_id"] for a in actions) == wanted["actions"]
    during = [a for a in actions if down_at <= parse_time(a["deadline_at"]) <= up_at]
    others = [a for a in actions if a not in during]
    assert len(during) >= IN_OUTAGE, (down_at, up_at, [a["deadline_at"] for a in actions])
    assert others
    late = {"during the outage": max(map(lateness, during)), "else": max(map(lateness, others))}
    print(f"Redis down {(up_at - down_at).total_seconds():.1f} s; {len(during)} of "
          f"{len(actions)} auto-actions due meanwhile; worst lateness {late}")  # fmt: skip
    assert all(0 <= lateness(a) <= LATE_S for a in actions), late
