"""`aftersale worker`: check the topics, then run the faust worker until stopped."""

from __future__ import annotations

import argparse
import faulthandler
import gc
import logging
import signal

from aiokafka.admin import AIOKafkaAdminClient

from streams.contract.topics import AFTERSALE_EVENTS, TopicSpec, load_topic_specs
from streams.errors import ConfigError
from streams.live.admin import check_topics, create_topics, replication_factor
from streams.live.record_limits import output_needs
from streams.live.settings import Settings
from streams.tools.gc_tuning import GC_THRESHOLDS
from streams.tools.kafka_call import run_against_kafka


def tune_gc() -> None:
    """Collect young objects rarely, and never re-scan what exists once the app is built."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--loglevel",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="log level",
    )


def internal_topics(settings: Settings, replication: int) -> list[TopicSpec]:
    """The worker's own topics besides the state changelog (which faust creates): ticks, the
    input records it reroutes to their order's partition (kept as long as the inputs, and
    stamped with their original append time), and the read side's feed."""
    names = settings.topics()
    partitions = settings.partitions
    return [
        TopicSpec(
            names.ticks,
            "internal",
            partitions,
            replication,
            {"cleanup.policy": "delete", "retention.ms": "3600000"},
        ),
        TopicSpec(
            names.reroute,
            "internal",
            partitions,
            replication,
            {
                "cleanup.policy": "delete",
                "retention.ms": "604800000",
                "message.timestamp.type": "CreateTime",
            },
        ),
        # the read side's feed: changes, not snapshots, so not compacted; kept a week
        TopicSpec(
            names.status,
            "internal",
            partitions,
            replication,
            {"cleanup.policy": "delete", "retention.ms": "604800000"},
        ),
    ]


async def prepare_topics(settings: Settings) -> int:
    """Refuse to start on missing or mismatched contract topics; create the ticks topic.

    Returns the replication factor for the worker's own topics (ticks, state changelog): that
    of `aftersale-events`, so state is kept as durably as the input it follows from (faust's
    default, 1, would lose it with one broker, and fail every write where the cluster asks for
    min.insync.replicas 2)."""
    specs = load_topic_specs(None, settings.partitions, None, settings.topic_prefix)
    admin = AIOKafkaAdminClient(request_timeout_ms=15_000, **settings.client_options())
    await admin.start()
    try:
        needs = output_needs(settings.topic_prefix)
        problems = [r for r in await check_topics(admin, specs, needs) if r.problems]
        if problems:
            lines = "; ".join(f"{r.name}: {', '.join(r.problems)}" for r in problems)
            raise ConfigError(
                f"topics do not match topics/topics.yaml ({lines}); run `aftersale topics "
                "create` (with the same partitions), or raise max.message.bytes as named"
            )
        replication = await replication_factor(admin, settings.topic(AFTERSALE_EVENTS))
        await create_topics(admin, internal_topics(settings, replication))
    finally:
        await admin.close()
    return replication


def run(args: argparse.Namespace) -> int:
    """Start the worker; returns when it stops."""
    # `kill -USR1 <pid>` prints every thread's stack to stderr (a stuck worker, diagnosed live)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    settings = Settings.from_env()
    replication = run_against_kafka(settings, prepare_topics(settings))
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    import faust

    from streams.live.app import build_app

    app = build_app(settings, replication=replication)
    worker = faust.Worker(app, loglevel=args.loglevel)
    tune_gc()
    worker.execute_from_commandline()
    return 0
