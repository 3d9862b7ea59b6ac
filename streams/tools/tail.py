"""`python -m streams.tools.tail`: print committed output records as they arrive (demo aid)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import Counter

import orjson
from aiokafka import AIOKafkaConsumer


async def tail(topics: list[str], bootstrap: str, seconds: float) -> Counter[str]:
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen: Counter[str] = Counter()
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    value = orjson.loads(record.value)
                    kind = value.get("type") or value.get("error")
                    seen[kind] += 1
                    if "action_id" in value:
                        line = (
                            f"{value['fired_at']}  {value['type']:<12} {value['action_id']:<34} "
                            f"deadline {value['deadline_at']}"
                        )
                    else:
                        line = f"dead letter  {value['error']:<18} {value['detail'][:60]}"
                    print(line, flush=True)
    finally:
        await consumer.stop()
    return seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--topic", action="append", required=True)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--bootstrap", default=os.environ.get("AFTERSALE_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    )
    args = parser.parse_args()
    seen = asyncio.run(tail(args.topic, args.bootstrap, args.seconds))
    summary = ", ".join(f"{k} {v}" for k, v in sorted(seen.items())) or "nothing yet"
    print(f"tail: {sum(seen.values())} records ({summary})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
