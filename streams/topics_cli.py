"""`aftersale topics create|check`: the contract's topics from topics/topics.yaml."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from streams.errors import ConfigError
from streams.kafka_admin import check_topics, create_topics
from streams.topic_defs import TopicSpec, load_topic_specs

BOOTSTRAP_ENV = "AFTERSALE_KAFKA_BOOTSTRAP"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("create", "check"), help="create missing, or check all")
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get(BOOTSTRAP_ENV, "127.0.0.1:9092"),
        help=f"Kafka bootstrap servers (env {BOOTSTRAP_ENV}, default 127.0.0.1:9092)",
    )
    parser.add_argument("--partitions", type=int, help="override every topic's partition count")
    parser.add_argument("--replication-factor", type=int, help="override the replication factor")
    parser.add_argument("--prefix", default="", help="prefix every topic name (isolated runs)")


def run(args: argparse.Namespace) -> int:
    """Create (idempotently) or check the topics; exit 1 when a check finds a mismatch."""
    specs = load_topic_specs(None, args.partitions, args.replication_factor, args.prefix)
    # aiokafka logs each failed connection attempt; our one-line error says it better.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        return asyncio.run(_run(args, specs))
    except (KafkaError, OSError) as exc:
        raise ConfigError(f"Kafka at {args.bootstrap}: {exc!r}") from None


async def _run(args: argparse.Namespace, specs: list[TopicSpec]) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=args.bootstrap, request_timeout_ms=15_000)
    await admin.start()
    try:
        if args.action == "create":
            created = await create_topics(admin, specs)
            for name in created:
                print(f"created {name}")
        reports = await check_topics(admin, specs)
    finally:
        await admin.close()
    bad = 0
    for report in reports:
        if report.problems:
            bad += 1
            print(f"MISMATCH {report.name}: {'; '.join(report.problems)}", file=sys.stderr)
        else:
            print(f"ok {report.name}")
    return 1 if bad else 0
