"""The `aftersale` command: replay, simulate (and, with the streaming issue, worker/topics)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from streams import __version__
from streams.contract.times import parse_time
from streams.errors import AftersaleError, ConfigError
from streams.rules.policy import resolve_policy
from streams.tools.policy import POLICY_HELP


def _until(text: str | None) -> datetime | None:
    """`--until`, checked after parsing: a bad one is one line, like every other error here."""
    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError:
        raise ConfigError(
            f"--until {text!r} is not an RFC 3339 time with an offset (e.g. 2026-11-03T10:00:00Z)"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aftersale",
        description="After-sale deadline enforcer: merchant review, buyer return and merchant "
        "receipt deadlines with auto-actions, reminders and dead letters.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    replay = commands.add_parser(
        "replay",
        help="run the engine over a JSONL file on a simulated clock (no Kafka)",
        description="Replay input events (one JSON record value per line, in file order) "
        "through the engine. The clock is the largest occurred_at read so far; after the last "
        "line it advances to --until. Writes actions.jsonl, notifications.jsonl and "
        "deadletter.jsonl to --out and prints a summary.",
    )
    replay.add_argument("events", type=Path, metavar="EVENTS.jsonl", help="input events")
    replay.add_argument(
        "--until",
        metavar="TIME",
        help="advance the clock to this RFC 3339 time after the last line (default: stop at the "
        "last record's time)",
    )
    replay.add_argument("--policy", metavar="NAME|FILE", help=POLICY_HELP)
    replay.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    replay.add_argument("--quiet", action="store_true", help="no progress and no summary")
    replay.add_argument("--json", action="store_true", help="print the summary as JSON")
    replay.add_argument(
        "--status",
        action="store_true",
        help="also write status.jsonl: the read side's feed of order and case changes",
    )
    replay.add_argument(
        "--jobs",
        type=_jobs,
        metavar="N",
        help="processes to shard the orders over, output byte-identical to --jobs 1 (default: "
        "the number of cores; files under 8 MB replay in one process)",
    )

    from streams.tools.simulate import add_arguments as add_simulate_arguments

    simulate = commands.add_parser(
        "simulate",
        help="generate a realistic, seeded event stream (JSONL)",
        description="Generate a deterministic stream of order and after-sale events: merchants "
        "who answer in time, late or never, buyers who ship back or not, rejections, re-opened "
        "cases, escalations, producer retries and a share of bad input.",
    )
    add_simulate_arguments(simulate)

    from streams.tools.whatif import add_arguments as add_whatif_arguments

    whatif = commands.add_parser(
        "whatif",
        help="replay one event log under two policies and show what changes",
        description="Replay EVENTS under policy A and under policy B (each as `aftersale "
        "replay` would) and print what a rule change would have done: the cases whose path "
        "differs (an auto-approval where the merchant answered, an auto-close where the buyer "
        "shipped back, an auto-refund where the merchant confirmed receipt), the cases and "
        "amounts refunded and the refund rate under each.",
    )
    add_whatif_arguments(whatif)

    from streams.tools.policy import add_arguments as add_policy_arguments

    policy = commands.add_parser(
        "policy",
        help="the policy presets: list them, show one",
        description="Policy presets shipped with the package: the published after-sale rules "
        "of a marketplace, with the source of every number. Use one with --policy NAME, or "
        "AFTERSALE_POLICY=NAME for the worker.",
    )
    add_policy_arguments(policy)

    from streams.tools.topics import add_arguments as add_topics_arguments

    topics = commands.add_parser(
        "topics",
        help="create or check the contract's Kafka topics (topics/topics.yaml)",
        description="create: create the topics that are missing (idempotent), then check. "
        "check: verify every topic exists with its partition count and configs; exit 1 and "
        "name each mismatch otherwise.",
    )
    add_topics_arguments(topics)

    from streams.tools.worker import add_arguments as add_worker_arguments

    worker = commands.add_parser(
        "worker",
        help="run the streaming worker (faust) on the Kafka topics, settings from AFTERSALE_*",
        description="Consume order-events and aftersale-events, keep per-order state, fire "
        "deadlines and reminders on the wall clock and write aftersale-actions, "
        "aftersale-notifications and aftersale-deadletter. Settings come from AFTERSALE_* "
        "environment variables (see the README's configuration table).",
    )
    add_worker_arguments(worker)

    from streams.readside.commands import add_project_arguments

    project = commands.add_parser(
        "project",
        help="project the worker's status feed into Redis (the read side), settings from "
        "AFTERSALE_*",
        description="Consume <app id>-status (read_committed, group <app id>-projector) and "
        "apply each record exactly once to Redis (AFTERSALE_REDIS_URL), resuming from the "
        "offsets stored there. Waits and retries while Redis is down; stops on SIGTERM.",
    )
    add_project_arguments(project)

    from streams.readside.commands import add_api_arguments

    api = commands.add_parser(
        "api",
        help="serve the read side over HTTP from Redis (deploy/openapi.yaml)",
        description="GET /orders/{order_id}, /orders/{order_id}/cases/{case_id}, "
        "/merchants/{merchant_id}/refund-rate, /merchants/top-refund-rate, /healthz, /readyz "
        "on AFTERSALE_API_BIND:AFTERSALE_API_PORT, reading AFTERSALE_REDIS_URL only.",
    )
    add_api_arguments(api)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "replay":
            return _replay(args)
        if args.command == "simulate":
            from streams.tools.simulate import run as run_simulate

            return run_simulate(args)
        if args.command == "whatif":
            from streams.tools.whatif import run as run_whatif

            return run_whatif(args, _until(args.until))
        if args.command == "policy":
            from streams.tools.policy import run as run_policy

            return run_policy(args)
        if args.command == "topics":
            from streams.tools.topics import run as run_topics

            return run_topics(args)
        if args.command == "worker":
            from streams.tools.worker import run as run_worker

            return run_worker(args)
        if args.command == "project":
            from streams.readside.projector import run as run_project

            return run_project(args)
        if args.command == "api":
            from streams.readside.api import run as run_api

            return run_api(args)
    except AftersaleError as exc:
        print(f"aftersale {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"aftersale {args.command}: interrupted", file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command}")
    return 2  # pragma: no cover - parser.error exits


def _jobs(text: str) -> int:
    try:
        jobs = int(text)
    except ValueError:
        jobs = 0
    if not 1 <= jobs <= 256:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 256, not {text!r}")
    return jobs


def _replay(args: argparse.Namespace) -> int:
    import orjson

    from streams.tools.replay import ProgressLine, replay
    from streams.tools.replay_jobs import SHARD_FROM_BYTES, default_jobs, replay_jobs

    until = _until(args.until)
    if not args.events.is_file():
        raise ConfigError(f"input file not found: {args.events}")
    policy = resolve_policy(args.policy)
    progress = None if args.quiet else ProgressLine()
    jobs = args.jobs
    if jobs is None:
        # forking and merging cost more than they save on a small file
        jobs = default_jobs() if args.events.stat().st_size >= SHARD_FROM_BYTES else 1
    if jobs > 1:
        summary = replay_jobs(
            args.events, args.out, policy, jobs, until, progress, status=args.status
        )
    else:
        summary = replay(args.events, args.out, policy, until, progress, status=args.status)
    if args.json:
        print(orjson.dumps(summary.as_dict(), option=orjson.OPT_INDENT_2).decode())
    elif not args.quiet:
        print(summary.render())
        print(f"wrote {args.out}/{{actions,notifications,deadletter}}.jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
