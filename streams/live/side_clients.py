"""Plain aiokafka clients beside faust's: tick records, end offsets, committed offsets.

faust's own producer is transactional in exactly_once mode and stalls outside stream
iteration; its consumer answers offset questions through its consumer thread, which takes a
second or more per call. These clients answer on the worker's event loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition


class SideClients:
    """Started on first use, closed by `close()`."""

    def __init__(self, options: dict[str, Any], group_id: str) -> None:
        self.options, self.group_id = options, group_id
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._prober: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        if self._producer is None:
            self._producer = AIOKafkaProducer(linger_ms=0, **self.options)
            await self._producer.start()
        if self._consumer is None:
            # read_committed: end offsets are the last stable offsets, as the worker reads
            self._consumer = await self._committed_reader()
        if self._admin is None:
            self._admin = AIOKafkaAdminClient(**self.options)
            await self._admin.start()

    async def _committed_reader(self, reset: str = "latest") -> AIOKafkaConsumer:
        """A started read_committed consumer outside any group."""
        consumer = AIOKafkaConsumer(
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset=reset,
            **self.options,
        )
        await consumer.start()
        return consumer

    async def tick(self, topic: str, partition: int) -> None:
        """Write an (empty) tick record to `partition` of `topic`."""
        await self.start()
        assert self._producer is not None
        await self._producer.send_and_wait(topic, b"", partition=partition)

    async def end_offsets(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        await self.start()
        assert self._consumer is not None
        ends: dict[TopicPartition, int] = await self._consumer.end_offsets(list(tps))
        return ends

    async def start_offsets(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Where the group resumes reading: its committed offsets, else the log start."""
        await self.start()
        assert self._admin is not None
        assert self._consumer is not None
        wanted = list(tps)
        committed = await self._admin.list_consumer_group_offsets(self.group_id, partitions=wanted)
        out = {tp: meta.offset for tp, meta in committed.items() if meta.offset >= 0}
        missing = [tp for tp in wanted if tp not in out]
        if missing:
            out.update(await self._consumer.beginning_offsets(missing))
        return out

    async def has_records(self, tp: TopicPartition, start: int, end: int) -> bool:
        """Whether a read_committed reader finds any record in [start, end) of `tp`.

        False means the offsets hold only transaction markers or aborted records.
        """
        if self._prober is None:
            # never reset: a position moved by an out-of-range reset (after a broker restart,
            # say) would pass for a gap read through, and records would be skipped
            self._prober = await self._committed_reader(reset="none")
        prober = self._prober
        prober.assign([tp])
        prober.seek(tp, start)
        try:
            fetched = await prober.getmany(tp, timeout_ms=100)  # loopback-fast; else next run
            if any(record.offset < end for record in fetched.get(tp, [])):
                return True
            position: int = await prober.position(tp)
        except KafkaError:
            return True  # not confirmed past the gap: assume records wait there
        return position < end  # not read past the gap: assume records wait there

    async def close(self) -> None:
        if self._prober is not None:
            await self._prober.stop()
            self._prober = None
        for client in (self._producer, self._consumer):
            if client is not None:
                await client.stop()
        if self._admin is not None:
            await self._admin.close()
        self._producer = self._consumer = self._admin = None
