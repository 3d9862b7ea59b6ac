"""`aftersale topics create|check`: the contract's topics from topics/topics.yaml."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from streams.contract.topics import TopicSpec, load_topic_specs
from streams.live.admin import check_topics, create_topics
from streams.live.record_limits import output_needs
from streams.live.settings import PREFIX, Settings
from streams.tools.kafka_call import run_against_kafka


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Connects as the worker does: AFTERSALE_KAFKA_* (bootstrap, SASL, SSL); "
        "AFTERSALE_PARTITIONS and AFTERSALE_TOPIC_PREFIX, when set, are the defaults of "
        "--partitions and --prefix."
    )
    parser.add_argument("action", choices=("create", "check"), help="create missing, or check all")
    parser.add_argument(
        "--bootstrap", help="Kafka bootstrap servers (default: AFTERSALE_KAFKA_BOOTSTRAP)"
    )
    parser.add_argument(
        "--partitions",
        type=int,
        help="override every topic's partition count (default: AFTERSALE_PARTITIONS if set, "
        "else topics.yaml's)",
    )
    parser.add_argument("--replication-factor", type=int, help="override the replication factor")
    parser.add_argument(
        "--prefix", help="prefix every topic name (default: AFTERSALE_TOPIC_PREFIX, else none)"
    )


def run(args: argparse.Namespace) -> int:
    """Create (idempotently) or check the topics; exit 1 when a check finds a mismatch."""
    # the policy is the worker's business (it may not be written yet when topics are made)
    overrides: dict[str, Any] = {"policy_file": None, "policy": None}
    if args.bootstrap is not None:
        overrides["kafka_bootstrap"] = args.bootstrap
    settings = Settings.from_env(**overrides)
    partitions = args.partitions
    if partitions is None and f"{PREFIX}PARTITIONS" in os.environ:
        partitions = settings.partitions
    prefix = settings.topic_prefix if args.prefix is None else args.prefix
    specs = load_topic_specs(None, partitions, args.replication_factor, prefix)
    needs = output_needs(prefix)
    return run_against_kafka(settings, _run(args.action, specs, needs, settings.client_options()))


async def _run(
    action: str, specs: list[TopicSpec], needs: dict[str, int], options: dict[str, Any]
) -> int:
    admin = AIOKafkaAdminClient(request_timeout_ms=15_000, **options)
    await admin.start()
    try:
        if action == "create":
            created = await create_topics(admin, specs)
            for name in created:
                print(f"created {name}")
        reports = await check_topics(admin, specs, needs)
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
