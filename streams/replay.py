"""`aftersale replay`: the engine over a JSONL file on a simulated clock, without Kafka.

The clock is the largest `occurred_at` of the records read so far that passed validation;
before each record is applied everything due at or before the clock fires. File order is
arrival order. Output is byte-identical for the same input.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, TextIO

import orjson

from streams.deadletters import dead_letter
from streams.effects import Action, Effect, Reminder
from streams.engine import Engine
from streams.errors import ConfigError, InputError
from streams.events import decode
from streams.policy import Policy
from streams.summary import Summary

ACTIONS_FILE = "actions.jsonl"
NOTIFICATIONS_FILE = "notifications.jsonl"
DEADLETTER_FILE = "deadletter.jsonl"


@dataclass(slots=True)
class _Outputs:
    actions: BinaryIO
    notifications: BinaryIO
    deadletter: BinaryIO

    def write(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Action):
                self.actions.write(orjson.dumps(effect.record(effect.deadline_at)) + b"\n")
            elif isinstance(effect, Reminder):
                self.notifications.write(orjson.dumps(effect.record()) + b"\n")


def replay(
    events: Path,
    out_dir: Path,
    policy: Policy,
    until: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Summary:
    """Replay `events` into `out_dir`; `progress(bytes_read, total_bytes)` reports progress."""
    try:
        total = events.stat().st_size
        source = events.open("rb")
    except OSError as exc:
        raise ConfigError(f"cannot read {events}: {exc.strerror or exc}") from exc
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output folder {out_dir}: {exc.strerror or exc}") from exc
    engine = Engine(policy)
    summary = Summary()
    with ExitStack() as stack:
        stack.enter_context(source)
        outputs = _Outputs(
            *(
                stack.enter_context((out_dir / name).open("wb"))
                for name in (ACTIONS_FILE, NOTIFICATIONS_FILE, DEADLETTER_FILE)
            )
        )
        clock: datetime | None = None
        for raw in _records(source, progress, total):
            summary.read += 1
            if summary.read & 0xFFFF == 0:
                # Engine state is acyclic and long-lived: keep the cyclic GC from re-walking it.
                gc.freeze()
            try:
                event = decode(raw)
            except InputError as error:
                _refuse(outputs, summary, error, raw)
                continue
            if clock is None or event.occurred_at > clock:
                clock = event.occurred_at
            # Even when the clock stands still, a record applied since the last advance (one
            # stamped in the past) may have made something due: fire it before this record.
            fired = engine.advance(clock)
            if fired:
                summary.count_effects(fired)
                outputs.write(fired)
            result = engine.apply(event, clock)
            summary.count_effects(result.effects)
            outputs.write(result.effects)
            if result.outcome == "applied":
                summary.applied += 1
            elif result.outcome == "duplicate":
                summary.duplicates += 1
            else:
                assert result.error is not None
                _refuse(outputs, summary, result.error, raw)
        end = until if clock is None or (until is not None and until > clock) else clock
        if end is not None:
            fired = engine.advance(end)
            summary.count_effects(fired)
            outputs.write(fired)
    return summary


def _refuse(outputs: _Outputs, summary: Summary, error: InputError, raw: bytes) -> None:
    summary.dead_letters[error.code] += 1
    outputs.deadletter.write(orjson.dumps(dead_letter(error, raw)) + b"\n")


def _records(
    source: BinaryIO, progress: Callable[[int, int], None] | None, total: int
) -> Iterator[bytes]:
    """Non-blank lines without their line ending."""
    done = 0
    for n, line in enumerate(source, 1):
        done += len(line)
        if progress is not None and n % 65536 == 0:
            progress(done, total)
        raw = line.rstrip(b"\r\n")
        if raw.strip():
            yield raw
    if progress is not None:
        progress(done, total)


class ProgressLine:
    """Progress on stderr, at most a few times a second; redraws one line on a terminal."""

    def __init__(self, stream: TextIO = sys.stderr, every: float = 1.0) -> None:
        self.stream, self.every = stream, every
        self.tty = stream.isatty()
        self.start = self.last = time.monotonic()
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        finished = done >= total
        # Short runs show nothing; a long one always shows its final 100%.
        if (now - self.last < self.every) and not (finished and self.shown):
            return
        self.last, self.shown = now, True
        pct = 100.0 * done / total if total else 100.0
        rate = done / (now - self.start) / 1e6 if now > self.start else 0.0
        line = f"replay: {pct:5.1f}% of {total / 1e6:.1f} MB ({rate:.1f} MB/s)"
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        if self.tty and finished:
            self.stream.write("\n")
        self.stream.flush()
