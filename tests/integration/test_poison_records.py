"""No record can poison the pipeline: large values on the real broker become small dead letters.

A 1 MB value once made a 2.4 MB dead letter that the broker refused; the worker crashed, and
on restart redid the same record and crashed again, so every deadline of its partitions
stopped. Here values of every size up to the broker's limit, on both input topics, keyed and
not, each become one dead letter of the contract's shape while a deadline due meanwhile fires
on time.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.record.default_records import DefaultRecordBase, DefaultRecordBatchBuilder

from streams.contract.deadletters import ORIGINAL_MAX
from streams.contract.schemas import contract
from streams.contract.times import format_time, parse_time
from streams.contract.topics import load_topic_specs
from tests.integration.endpoints import BOOTSTRAP
from tests.integration.worker_harness import Env, WorkerProcess, read_outputs

#: merchant_review of the test's fast policy (tests/integration/worker_harness.py), seconds
REVIEW_S = 3.0
#: The contract's dead-letter bound on the original (64 KiB), and the sizes around it
KIB_64 = 64 * 1024


async def max_message_bytes(topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        resource = ConfigResource(ConfigResourceType.TOPIC, topic)
        (response,) = await admin.describe_configs([resource])
        ((*_, entries),) = response.resources
        configs = {entry[0]: entry[1] for entry in entries}
    finally:
        await admin.close()
    return int(configs["max.message.bytes"])


def largest_value_accepted(limit: int, key: bytes | None) -> int:
    """The largest value whose one-record batch (with `key`) is at most `limit` bytes."""
    builder = DefaultRecordBatchBuilder(2, False, 0, 0, 0, 0, 0)
    header: int = DefaultRecordBase.HEADER_STRUCT.size
    size = limit - header
    while header + builder.size_in_bytes(0, 0, key, b"x" * size, []) > limit:
        size -= 1
    return size


def value_of(size: int) -> bytes:
    """A JSON object of `size` bytes with no `type` (a schema_violation); empty at 0 (malformed)."""
    if size == 0:
        return b""
    return b'{"pad":"' + b"x" * (size - 10) + b'"}'


async def test_values_up_to_the_brokers_limit_become_small_dead_letters_while_deadlines_fire(
    env: Env, workers: Callable[..., WorkerProcess]
) -> None:
    worker = workers()
    worker.start()
    await worker.wait_ready()
    topics = {name: env.prefix + name for name in ("order-events", "aftersale-events")}
    limit = await max_message_bytes(topics["aftersale-events"])
    producer = AIOKafkaProducer(
        bootstrap_servers=BOOTSTRAP, linger_ms=0, max_request_size=2 * limit
    )
    await producer.start()
    sent: dict[tuple[str, int, int], tuple[bytes, bytes | None]] = {}
    try:
        order = f"{env.prefix}o-1"
        requested_at = datetime.now(UTC)
        request = {
            "event_id": f"{env.prefix}e-1", "type": "aftersale.requested", "order_id": order,
            "case_id": "c-1", "occurred_at": format_time(requested_at), "kind": "refund_only",
            "reason": "quality", "amount": 5990, "merchant_id": "m-1", "buyer_id": "b-1",
        }  # fmt: skip
        await producer.send_and_wait(
            topics["aftersale-events"], orjson.dumps(request), key=order.encode()
        )
        for topic in topics.values():
            for key in (b"k-1", None):
                largest = largest_value_accepted(limit, key)
                for size in (0, KIB_64, KIB_64 + 1, 500_000, largest):
                    value = value_of(size)
                    meta = await producer.send_and_wait(topic, value, key=key)
                    sent[(topic, meta.partition, meta.offset)] = (value, key)
    finally:
        await producer.stop()
    assert len(sent) == 20

    deadline = time.monotonic() + 60
    while True:
        outputs = await read_outputs(env.prefix, keys=True, settle=1.0)
        letters = outputs["aftersale-deadletter"]
        if len(letters) >= len(sent) and outputs["aftersale-actions"]:
            break
        assert time.monotonic() < deadline, (
            f"{len(letters)} dead letters after 60 s:\n{worker.tail()}"
        )
    assert worker.process is not None
    assert worker.process.poll() is None, worker.tail()  # still up
    assert worker.errors() == []

    check = contract().validator("records/deadletter.json")
    seen = set()
    for key, letter in letters:
        assert check(letter) is None
        where = (letter["topic"], letter["partition"], letter["offset"])
        value, sent_key = sent[where]
        seen.add(where)
        assert key == sent_key
        assert letter["error"] == ("malformed_json" if value == b"" else "schema_violation")
        assert base64.b64decode(letter["original_base64"]) == value[:ORIGINAL_MAX]
        if len(value) > ORIGINAL_MAX:
            assert (letter["truncated"], letter["original_size"]) == (True, len(value))
        else:
            assert "truncated" not in letter
        assert len(orjson.dumps(letter)) < 200_000
    assert seen == set(sent)  # each exactly once

    (action,) = [value for _, value in outputs["aftersale-actions"]]
    assert action["type"] == "auto_refund"
    due = parse_time(format_time(requested_at)) + timedelta(seconds=REVIEW_S)
    assert parse_time(action["deadline_at"]) == due
    late = (parse_time(action["fired_at"]) - due).total_seconds()
    assert 0 <= late < 2.0, late  # on time, the poison notwithstanding


async def test_a_topic_that_refuses_a_record_stops_the_worker_with_a_message_naming_it(
    env: Env, workers: Callable[..., WorkerProcess]
) -> None:
    # what no bounds can prevent: the dead-letter topic's limit lowered under a running worker
    worker = workers()
    worker.start()
    await worker.wait_ready()
    deadletter = env.prefix + "aftersale-deadletter"
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        spec = next(s for s in load_topic_specs(prefix=env.prefix) if s.name == deadletter)
        lowered = {**spec.configs, "max.message.bytes": "20000"}  # alter replaces them all
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, deadletter, lowered)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=0)
    await producer.start()
    try:
        await producer.send_and_wait(env.prefix + "aftersale-events", value_of(50_000), key=b"k-9")
    finally:
        await producer.stop()
    assert worker.process is not None
    deadline = time.monotonic() + 60
    while worker.process.poll() is None:
        assert time.monotonic() < deadline, f"the worker did not stop:\n{worker.tail()}"
        await asyncio.sleep(0.2)  # polling the process
    log = worker.log.read_text(errors="replace")
    assert f"{deadletter}[" in log
    assert "refused a batch of 1 record(s)" in log
    assert "with key b'k-9'" in log
    assert "MessageSizeTooLargeError" in log
    assert "Not retriable" in log
    # restarted, it refuses to start at all, naming the topic and what to raise (no crash loop
    # of half-done work: the check comes before any record is read)
    worker.start()
    assert worker.process.wait(60) == 2
    refused = worker.log.read_text(errors="replace")
    assert f"{deadletter}: max.message.bytes is 20000, below the" in refused
    assert "Traceback" not in refused
    assert await read_outputs(env.prefix, settle=1.0) == {
        "aftersale-actions": [],
        "aftersale-notifications": [],
        "aftersale-deadletter": [],
    }
