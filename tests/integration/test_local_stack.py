"""The local stack serves real clients: a KRaft broker with transactions, and Redis."""

from __future__ import annotations

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from tests.integration.endpoints import BOOTSTRAP, REDIS_URL


async def test_broker_lists_the_new_topic(admin: AIOKafkaAdminClient, topic: str) -> None:
    assert topic in await admin.list_topics()


async def test_transactional_write_is_read_committed_by_key_partition(topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, transactional_id=f"{topic}-tx")
    await producer.start()
    try:
        async with producer.transaction():
            sent = await producer.send_and_wait(topic, b'{"n": 1}', key=b"o-7")
            again = await producer.send_and_wait(topic, b'{"n": 2}', key=b"o-7")
    finally:
        await producer.stop()
    assert sent.partition == again.partition  # one key, one partition: order is kept
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=BOOTSTRAP,
        group_id=f"{topic}-g",
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=10_000, max_records=10)
        values = [r.value for records in batch.values() for r in records]
    finally:
        await consumer.stop()
    assert values == [b'{"n": 1}', b'{"n": 2}']


async def test_redis_answers(unique: str) -> None:
    client = aioredis.from_url(REDIS_URL)
    try:
        assert await client.ping() is True
        await client.set(unique, "v", ex=60)
        assert await client.get(unique) == b"v"
    finally:
        await client.aclose()
