"""The batch sender of the exactly-once commit path: one aiokafka record batch per topic."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from aiokafka.errors import MessageSizeTooLargeError, RequestTimedOutError
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch
from faust.exceptions import ProducerSendError

from streams.patches.eos_commit import RecordRefused, _batch_sender
from streams.rules.orders import OrderState
from streams.rules.state_codec import encode

STATE = encode(OrderState("o-1"))


class _Client:
    """aiokafka's producer as `_batch_sender` uses it: its real batch builder (200-byte batches),
    and a `send_batch` that records each batch's records and answers with its base offset."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, int, list[tuple[bytes | None, bytes | None]]]] = []
        self.next_offset = 500

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(200, 0, is_transactional=True)  # 0: no compression

    async def send_batch(
        self, builder: BatchBuilder, topic: str, *, partition: int
    ) -> asyncio.Future[SimpleNamespace]:
        batch = DefaultRecordBatch(bytes(builder._build()))  # the bytes aiokafka would send
        records = [(record.key, record.value) for record in batch]
        self.batches.append((topic, partition, records))
        done: asyncio.Future[SimpleNamespace] = asyncio.get_running_loop().create_future()
        done.set_result(SimpleNamespace(offset=self.next_offset))
        self.next_offset += len(records)
        return done


async def test_the_batch_sender_keeps_tombstones_and_splits_full_batches() -> None:
    client = _Client()
    producer = SimpleNamespace(_transaction_producers={"t-1": client})
    # forgotten orders (None: a tombstone) among states, first in a batch and after others
    records: list[tuple[bytes | None, bytes | None]] = [
        (f"o-{i}".encode(), None if i % 3 else STATE) for i in range(12)
    ]
    last = await _batch_sender(producer)("t-1", "changelog", 4, records)
    sent = [record for _, _, batch in client.batches for record in batch]
    assert sent == records  # in order, None values kept as tombstones
    sizes = [len(batch) for _, _, batch in client.batches]
    assert len(sizes) > 1  # the small batches cannot hold them all...
    assert max(sizes) > 1  # ...but hold more than one each
    assert {(topic, partition) for topic, partition, _ in client.batches} == {("changelog", 4)}
    assert last == 500 + len(records) - 1


async def test_the_batch_sender_refuses_a_transaction_without_a_producer() -> None:
    producer = SimpleNamespace(_transaction_producers={})
    with pytest.raises(ProducerSendError, match="t-9"):
        await _batch_sender(producer)("t-9", "changelog", 0, [(b"o-1", None)])


class _RefusingClient(_Client):
    """A broker that refuses every batch holding a value over `limit` bytes."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    async def send_batch(
        self, builder: BatchBuilder, topic: str, *, partition: int
    ) -> asyncio.Future[SimpleNamespace]:
        done = await super().send_batch(builder, topic, partition=partition)
        if any(len(value or b"") > self.limit for _, value in self.batches[-1][2]):
            refused: asyncio.Future[SimpleNamespace] = asyncio.get_running_loop().create_future()
            refused.set_exception(MessageSizeTooLargeError())
            return refused
        return done


async def test_a_batch_refused_for_its_records_says_which_and_why() -> None:
    producer = SimpleNamespace(_transaction_producers={"t-1": _RefusingClient(limit=60)})
    records: list[tuple[bytes | None, bytes | None]] = [
        (b"o-1", b"x" * 10),
        (b"o-2", b"y" * 20),
        (b"o-big", b"z" * 100),  # alone in its 200-byte batch
    ]
    with pytest.raises(RecordRefused) as refused:
        await _batch_sender(producer)("t-1", "out", 2, records)
    message = str(refused.value)
    assert message.startswith("out[2] refused a batch of 1 record(s), the largest 105 bytes")
    assert "b'o-big'" in message
    assert "MessageSizeTooLargeError" in message
    assert isinstance(refused.value.__cause__, MessageSizeTooLargeError)


async def test_a_retriable_send_error_is_not_taken_for_a_refused_record() -> None:
    client = _Client()

    async def timed_out(builder: BatchBuilder, topic: str, *, partition: int) -> None:
        raise RequestTimedOutError()

    client.send_batch = timed_out  # type: ignore[assignment, method-assign]
    producer = SimpleNamespace(_transaction_producers={"t-1": client})
    with pytest.raises(RequestTimedOutError):
        await _batch_sender(producer)("t-1", "out", 0, [(b"o-1", b"v")])
