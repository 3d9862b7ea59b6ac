"""`aftersale replay`: the engine over a JSONL file on a simulated clock, without Kafka.

The clock is the largest `occurred_at` of the records read so far that passed validation;
before each record is applied everything due at or before the clock fires. File order is
arrival order. Output is byte-identical for the same input.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Final, TextIO

import orjson

from streams.contract.deadletters import dead_letter
from streams.contract.events import decode
from streams.contract.topics import ACTIONS
from streams.errors import ConfigError, InputError
from streams.rules.effects import Effect, route
from streams.rules.engine import Engine
from streams.rules.policy import Policy
from streams.rules.status import status_records
from streams.tools.gc_tuning import GC_THRESHOLDS
from streams.tools.summary import Summary

ACTIONS_FILE = "actions.jsonl"
NOTIFICATIONS_FILE = "notifications.jsonl"
DEADLETTER_FILE = "deadletter.jsonl"
STATUS_FILE = "status.jsonl"


_LINE: Final = orjson.OPT_APPEND_NEWLINE
#: Output buffer per file: few, large writes.
_BUFFER: Final = 1 << 20


@dataclass(slots=True)
class _Outputs:
    actions: BinaryIO
    notifications: BinaryIO
    deadletter: BinaryIO
    #: The read side's feed (`streams/rules/status.py`), when asked for.
    status: BinaryIO | None = None

    def write(self, effects: list[Effect]) -> None:
        dumps = orjson.dumps
        for topic, record in route(effects, None):  # in replay an action fires at its deadline
            out = self.actions if topic == ACTIONS else self.notifications
            out.write(dumps(record, option=_LINE))
        if self.status is not None:
            for record in status_records(effects, None):
                self.status.write(dumps(record, option=_LINE))


def replay(
    events: Path,
    out_dir: Path,
    policy: Policy,
    until: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
    status: bool = False,
) -> Summary:
    """Replay `events` into `out_dir`; `progress(bytes_read, total_bytes)` reports progress;
    with `status`, also the read side's feed (`status.jsonl`)."""
    try:
        total = events.stat().st_size
        source = events.open("rb")
    except OSError as exc:
        raise ConfigError(f"cannot read {events}: {exc.strerror or exc}") from exc
    make_output_folder(out_dir)
    engine = Engine(policy)
    summary = Summary()
    with ExitStack() as stack:
        stack.enter_context(source)
        stack.callback(gc.set_threshold, *gc.get_threshold())
        gc.set_threshold(*GC_THRESHOLDS)  # restored on the way out
        outputs = _Outputs(
            *(
                stack.enter_context((out_dir / name).open("wb", buffering=_BUFFER))
                for name in (ACTIONS_FILE, NOTIFICATIONS_FILE, DEADLETTER_FILE)
            )
        )
        if status:
            path = out_dir / STATUS_FILE
            outputs.status = stack.enter_context(path.open("wb", buffering=_BUFFER))
        # Bound once: this loop runs per record.
        advance, apply, count, write = (
            engine.advance,
            engine.apply,
            summary.count_effects,
            outputs.write,
        )
        read = applied = duplicates = done = 0
        clock: datetime | None = None
        for line in source:
            # The record loop itself, not a generator of records: a generator step per line
            # cost about 0.3 us.
            done += len(line)
            raw = line.rstrip(b"\r\n")
            if not raw or raw.isspace():
                continue
            read += 1
            if read & 0xFFFF == 0:
                if progress is not None:
                    progress(done, total)
                # Engine state is acyclic and long-lived: keep the cyclic GC from re-walking it.
                gc.freeze()
            try:
                event = decode(raw)
            except InputError as error:
                _refuse(outputs, summary, error, raw)
                continue
            at = event.occurred_at
            if clock is None or at > clock:
                clock = at
            # Even when the clock stands still, a record applied since the last advance (one
            # stamped in the past) may have made something due: fire it before this record.
            fired = advance(clock)
            if fired:
                count(fired)
                write(fired)
            result = apply(event, clock)
            effects = result.effects
            if effects:
                count(effects)
                write(effects)
            verdict = result.verdict
            if verdict == "applied":
                applied += 1
            elif verdict == "duplicate":
                duplicates += 1
            else:
                assert result.error is not None
                _refuse(outputs, summary, result.error, raw)
        if progress is not None:
            progress(done, total)
        summary.read, summary.applied, summary.duplicates = read, applied, duplicates
        end = until if clock is None or (until is not None and until > clock) else clock
        if end is not None:
            fired = engine.advance(end)
            summary.count_effects(fired)
            outputs.write(fired)
    return summary


def make_output_folder(out_dir: Path) -> None:
    """Create `out_dir` (and its parents); ConfigError naming it if that fails."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output folder {out_dir}: {exc.strerror or exc}") from exc


def _refuse(outputs: _Outputs, summary: Summary, error: InputError, raw: bytes) -> None:
    summary.dead_letters[error.code] += 1
    outputs.deadletter.write(orjson.dumps(dead_letter(error, raw), option=_LINE))


class ProgressLine:
    """Progress on stderr, at most a few times a second; redraws one line on a terminal."""

    def __init__(
        self, stream: TextIO = sys.stderr, every: float = 1.0, label: str = "replay"
    ) -> None:
        self.stream, self.every, self.label = stream, every, label
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
        line = f"{self.label}: {pct:5.1f}% of {total / 1e6:.1f} MB ({rate:.1f} MB/s)"
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        if self.tty and finished:
            self.stream.write("\n")
        self.stream.flush()
