"""The worker's plain clients against the real broker: the gap probe behind catch-up.

`SideClients.has_records` decides whether offsets a worker has not read hold a record; a wrong
"no" moves the committed position past that record and it is never judged, so every "no"
here is one the broker confirmed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.structs import TopicPartition

from streams.live.side_clients import SideClients
from tests.integration.endpoints import BOOTSTRAP


async def confirmed_empty(side: SideClients, tp: TopicPartition, start: int, end: int) -> bool:
    """Ask as the worker does, once per timer run, until the probe says "no record"."""
    for _ in range(50):
        if not await side.has_records(tp, start, end):
            return True
    return False


@pytest.fixture
async def side(unique: str) -> AsyncIterator[SideClients]:
    clients = SideClients({"bootstrap_servers": BOOTSTRAP}, f"{unique}-group")
    try:
        yield clients
    finally:
        await clients.close()


async def test_a_commit_marker_is_no_record_and_a_record_is_one(
    topic: str, side: SideClients
) -> None:
    tp = TopicPartition(topic, 0)
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, transactional_id=f"{topic}-tx")
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(topic, b"kept", partition=0)  # offset 0, marker 1
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"aborted", partition=0)  # offset 2, marker 3
        await producer.abort_transaction()
    finally:
        await producer.stop()
    assert await side.has_records(tp, 0, 2)
    # a "no" may take a few tries (a fetch that has not answered is no confirmation)
    assert await confirmed_empty(side, tp, 1, 2)  # the commit marker only
    assert await confirmed_empty(side, tp, 1, 4)  # the marker, an aborted record, its marker
    assert await side.has_records(tp, 0, 4)


async def test_records_the_probe_cannot_reach_count_as_records(
    topic: str, side: SideClients, admin: AIOKafkaAdminClient
) -> None:
    """A start before the log start (retention deleted it) is out of range: the probe must not
    reset to the end and call the gap empty, since records after the log start wait there."""
    tp = TopicPartition(topic, 0)
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
    await producer.start()
    try:
        for n in range(3):
            await producer.send_and_wait(topic, b"r%d" % n, partition=0)
    finally:
        await producer.stop()
    await admin.delete_records({tp: RecordsToDelete(before_offset=2)}, timeout_ms=10_000)
    # the log now starts at offset 2, a record there
    for _ in range(20):  # before: reset to the end, "no record", on the first or a later try
        assert await side.has_records(tp, 0, 3)
