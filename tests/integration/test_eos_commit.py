"""The outbox's commit protocol against the real broker, with aiokafka's transactional producer.

What a committed transaction carried reaches the local store with its changelog offset and is
visible to read_committed consumers; what an aborted one carried reaches neither.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.live.commit_hook import CommitHook
from streams.live.outbox import Outbox
from streams.patches.eos_commit import _batch_sender
from streams.rules.engine import Engine
from streams.rules.policy import Policy
from streams.rules.state_codec import decode_state
from tests.integration.endpoints import BOOTSTRAP
from tests.unit.factories import T0, DictLocalStore, event


class _FaustProducer:
    """The two attributes `_batch_sender` uses of faust's aiokafka Producer."""

    def __init__(self, tid: str, producer: AIOKafkaProducer) -> None:
        self._transaction_producers = {tid: producer}

    def _ensure_producer(self) -> Any:
        raise AssertionError("the transactional producer is used")


async def _read_committed(topic: str) -> list[tuple[int, bytes | None, bytes]]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=BOOTSTRAP,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    await consumer.start()
    out: list[tuple[int, bytes | None, bytes]] = []
    try:
        while batch := await consumer.getmany(timeout_ms=2000):
            for records in batch.values():
                out.extend((r.partition, r.key, r.value) for r in records)
    finally:
        await consumer.stop()
    return out


async def test_a_committed_batch_settles_and_an_aborted_one_does_not(topic: str) -> None:
    changelog = actions = topic  # one topic stands in for both here
    tid = f"{topic}-tx-1"
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, transactional_id=tid)
    await producer.start()
    local = DictLocalStore()
    outbox = Outbox(1, local)
    hook = CommitHook(changelog, {1: outbox}.get, dict)
    sender = _batch_sender(_FaustProducer(tid, producer))
    engine = Engine(Policy(), store=outbox)
    try:
        # 1: a committed transaction
        await producer.begin_transaction()
        engine.apply(event("aftersale.requested"), T0)
        outbox.emit(actions, b"o-7", b'{"action": 1}')
        await hook.send(sender, {1: tid}, hook.take([1]))
        await producer.commit_transaction()
        hook.committed(tid)
        assert list(local.data) == [b"o-7"]
        assert local.offsets == [0]  # the state record is the first of the partition
        settled = decode_state(local.data[b"o-7"])

        # 2: an aborted transaction (its partition was revoked, or the worker died)
        await producer.begin_transaction()
        engine.apply(event("aftersale.approved"), T0)
        outbox.emit(actions, b"o-7", b'{"action": 2}')
        await hook.send(sender, {1: tid}, hook.take([1]))
        await producer.abort_transaction()
        hook.aborted(tid)

        # 3: the next commit of that transactional id carries nothing of round 2
        await producer.begin_transaction()
        await hook.send(sender, {1: tid}, hook.take([1]))
        await producer.commit_transaction()
        hook.committed(tid)
    finally:
        await producer.stop()
    assert local.offsets == [0]
    assert decode_state(local.data[b"o-7"]) == settled
    seen = await _read_committed(topic)
    assert [(p, k) for p, k, _ in seen] == [(1, b"o-7"), (1, b"o-7")]
    assert seen[1][2] == b'{"action": 1}'
