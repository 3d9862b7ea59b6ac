"""A bare faust agent over a topic: the framework's own ceiling, for bench/stream.py (a).

    python bench/faust_probe.py TOPIC COUNT [--patched] [--app-id ID]

Consumes COUNT records of TOPIC from the start with one agent that does nothing (no state, no
output, at_least_once) and prints events/s as JSON. With --patched it runs under the worker's
hand-off, monitor and tuning (`streams/patches/handoff.py`, `LeanMonitor`, `FAUST_TUNING`),
to show what those are worth apart from the engine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import uuid
from typing import Any

import faust

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("topic")
    parser.add_argument("count", type=int)
    parser.add_argument("--patched", action="store_true")
    parser.add_argument("--app-id", help="faust app id (default: probe-<random>)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    extra: dict[str, Any] = {}
    if args.patched:
        from streams.live.app import FAUST_TUNING, LeanMonitor
        from streams.patches import handoff

        handoff.install()
        extra.update(FAUST_TUNING, monitor=LeanMonitor())
    app = faust.App(
        args.app_id or f"probe-{uuid.uuid4().hex[:8]}",
        broker=f"kafka://{BOOTSTRAP}",
        consumer_auto_offset_reset="earliest",
        datadir=tempfile.mkdtemp(prefix="faust-probe-"),
        web_enabled=False,
        **extra,
    )
    topic = app.topic(args.topic, key_serializer="raw", value_serializer="raw")
    seen = 0
    started = 0.0

    @app.agent(topic)
    async def count(stream: Any) -> None:
        nonlocal seen, started
        async for _ in stream.events():
            if not seen:
                started = time.monotonic()
            seen += 1
            if seen == args.count:
                rate = (seen - 1) / (time.monotonic() - started)
                # fd 1 itself: faust's worker redirects sys.stdout into its log
                os.write(1, json.dumps({"events_per_s": rate}).encode() + b"\n")
                os._exit(0)  # a probe: no need for faust's orderly shutdown

    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
