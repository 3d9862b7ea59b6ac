#!/usr/bin/env python3
"""Delete one local run's topics (every topic whose name starts with PREFIX), folders and
Redis keys.

The demo makes fresh topics and state for each run so that what it shows is that run's; this
removes them when it ends, so runs do not pile up in the broker's disk.

    .venv/bin/python deploy/local/drop_run.py demo-1764500000- .stack/demo-1764500000-data
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
from pathlib import Path

import redis.asyncio as aioredis
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from streams.live.admin import delete_topics_named


async def drop_topics(bootstrap: str, prefix: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15_000)
    await admin.start()
    try:
        return await delete_topics_named(admin, prefix)
    finally:
        await admin.close()


async def drop_keys(url: str, prefix: str) -> int:
    """Delete every key of `url`'s database whose name starts with `prefix`."""
    client = aioredis.from_url(url)
    try:
        pattern = prefix.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?") + "*"
        keys = [key async for key in client.scan_iter(match=pattern, count=1000)]
        return int(await client.delete(*keys)) if keys else 0
    finally:
        await client.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prefix", help="delete every topic whose name starts with this")
    parser.add_argument("folders", nargs="*", type=Path, help="folders to delete too")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    parser.add_argument("--redis", help="Redis URL whose keys starting with --redis-prefix go too")
    parser.add_argument("--redis-prefix", default="", help="the run's Redis key prefix")
    args = parser.parse_args()
    if args.redis and len(args.redis_prefix) < 3:
        parser.error(f"--redis-prefix {args.redis_prefix!r} is too short to name one run's keys")
    if len(args.prefix) < 3:
        parser.error(f"prefix {args.prefix!r} is too short to name one run's topics")
    try:
        topics = asyncio.run(drop_topics(args.bootstrap, args.prefix))
    except (KafkaError, OSError) as exc:
        print(f"drop_run: Kafka at {args.bootstrap}: {exc!r}", file=sys.stderr)
        return 2
    for folder in args.folders:
        shutil.rmtree(folder, ignore_errors=True)
    folders = "".join(f" and {f}" for f in args.folders)
    keys = ""
    if args.redis:
        try:
            keys = f", {asyncio.run(drop_keys(args.redis, args.redis_prefix))} Redis keys"
        except (aioredis.RedisError, OSError) as exc:
            print(f"drop_run: Redis: {exc!r}", file=sys.stderr)
    print(f"deleted {len(topics)} topics {args.prefix}*{keys}{folders}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
