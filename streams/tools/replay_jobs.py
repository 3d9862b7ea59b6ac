"""`aftersale replay --jobs N`: the replay sharded by order over N processes, output
byte-identical to one process.

Orders are independent but for the clock, which every valid record moves (the largest
`occurred_at` read so far). So each shard process reads the whole file a chunk of lines at a
time, and for each chunk:

    1. finds each line's order cheaply (only `order_id` is decoded), fully decodes its own
       lines, and sends the parent which of them are valid and their `occurred_at`;
    2. gets back from the parent the clock at every line of the chunk (merged from all the
       shards' answers), and runs the engine over its own orders with it, firing before every
       valid line exactly what the one-process replay fires there for its orders.

A shard reads chunk k + 1 while the parent merges chunk k's clock, so nobody waits long, and
memory holds a chunk or two of events, not the file. Every output line carries where the
one-process replay writes it: the line it follows, fired before (0) or applied at (1) that line,
and, among what fires before one line, the due time and order id (the timer wheel's own order,
which depends on nothing else). The parent merges the shards' outputs of each chunk by that
place and writes them.
"""

from __future__ import annotations

import gc
import heapq
import multiprocessing
import os
import queue
import zlib
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from pathlib import Path
from typing import Any, BinaryIO, Final

import msgspec
import orjson

from streams.contract.deadletters import dead_letter
from streams.contract.events import Event, decode
from streams.contract.topics import ACTIONS
from streams.errors import ConfigError, InputError, ShardError
from streams.rules.effects import Effect, route
from streams.rules.engine import Engine
from streams.rules.policy import Policy
from streams.rules.status import status_records
from streams.tools.gc_tuning import GC_THRESHOLDS
from streams.tools.replay import (
    ACTIONS_FILE,
    DEADLETTER_FILE,
    NOTIFICATIONS_FILE,
    STATUS_FILE,
    make_output_folder,
)
from streams.tools.summary import Summary

_LINE: Final = orjson.OPT_APPEND_NEWLINE
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO: Final = timedelta(microseconds=1)
#: A line that is not a valid event (the clock does not move, nothing fires before it).
_INVALID: Final = -(1 << 63)
#: Below this input size `aftersale replay` runs in one process unless --jobs says otherwise.
SHARD_FROM_BYTES: Final = 8 << 20
#: Lines per step: what a shard holds decoded at once, and how far it may run ahead.
CHUNK_LINES: Final = 1 << 15
#: Output buffer per file: few, large writes.
_BUFFER: Final = 1 << 20

#: (line, 0 fired before it | 1 applied at it, due µs, order id): where an output goes.
Place = tuple[int, int, int, str]
#: A shard's output lines of a step, each with its place: actions, notifications, dead
#: letters, status.
Tagged = tuple[list[tuple[Place, bytes]], ...]


class _OrderOnly(msgspec.Struct):
    order_id: str


_order_only: Final = msgspec.json.Decoder(_OrderOnly)


def shard_of(raw: bytes, jobs: int) -> int:
    """The shard of an input line: by its decoded order id, so every line of an order lands on
    one shard however its JSON is spelled (a line without one: shard 0, which dead-letters
    it). (Reading the id straight from the bytes where no escape could change it was tried:
    checking that costs more than msgspec's decode of the one field.)"""
    try:
        order_id = _order_only.decode(raw).order_id
    except (msgspec.DecodeError, RecursionError):
        return 0
    return zlib.crc32(order_id.encode("utf-8")) % jobs


def _micros(when: datetime) -> int:
    return (when - _EPOCH) // _MICRO


def _instant(micros: int) -> datetime:
    return _EPOCH + _MICRO * micros


@dataclass(slots=True)
class _Chunk:
    """A chunk's lines as one shard sees them: the first line's number, how many lines, and
    its own lines (line number, event and its `occurred_at` in µs or the error that refused it
    and _INVALID, raw bytes)."""

    first: int
    count: int = 0
    own: list[tuple[int, Event | None, int, InputError | None, bytes]] = field(default_factory=list)

    def times(self) -> tuple[bytes, bytes]:
        """Step 1's answer: (line numbers, occurred_at µs or _INVALID) of its own lines."""
        numbers = array("q", [line[0] for line in self.own])
        times = array("q", [line[2] for line in self.own])
        return numbers.tobytes(), times.tobytes()


def _chunks(path: Path, index: int, jobs: int, progress: Any | None) -> Iterator[_Chunk]:
    """The file's chunks, with this shard's lines decoded."""
    chunk = _Chunk(1)
    own = chunk.own
    done = line_no = 0
    with path.open("rb") as source:
        for line in source:
            done += len(line)
            raw = line.rstrip(b"\r\n")
            if not raw or raw.isspace():
                continue
            line_no += 1
            if shard_of(raw, jobs) == index:
                try:
                    event = decode(raw)
                except InputError as error:
                    own.append((line_no, None, _INVALID, error, raw))
                else:
                    own.append((line_no, event, (event.occurred_at - _EPOCH) // _MICRO, None, raw))
            if line_no % CHUNK_LINES == 0:
                chunk.count = line_no - chunk.first + 1
                if progress is not None:
                    progress.value = done
                yield chunk
                chunk = _Chunk(line_no + 1)
                own = chunk.own
    if progress is not None:
        progress.value = done
    chunk.count = line_no - chunk.first + 1
    if chunk.count:
        yield chunk


class _Shard:
    """One shard's engine, run a chunk at a time."""

    def __init__(self, policy: Policy, status: bool) -> None:
        self.engine = Engine(policy)
        self.summary = Summary()
        self.status = status
        self._out: Tagged = ([], [], [], [])
        self._floor: datetime | None = None
        self._floor_us = 0
        self._clock_us = _INVALID
        self._now = _EPOCH

    def run(self, chunk: _Chunk, clock: array[int], valid: bytes) -> Tagged:
        """Step 2: the engine over the chunk's own lines, with the clock at each of its lines
        (`valid[i]`: line `chunk.first + i` is a valid event, and the one-process replay fires
        what is due before it)."""
        summary = self.summary
        apply, count, floor_micros = self.engine.apply, summary.count_effects, self._floor_micros
        first = chunk.first
        position = first
        for line_no, event, own_micros, error, raw in chunk.own:
            # the clock never goes back: nothing fires before this line unless the clock of
            # the line before it reached the wheel's floor
            if line_no > position and clock[line_no - first - 1] >= floor_micros():
                self._fire_before(position, line_no, clock, valid, first)
            position = line_no + 1
            if event is None:
                assert error is not None
                self._refuse((line_no, 1, 0, ""), error, raw)
                continue
            micros = clock[line_no - first]
            # the engine compares instants only: the event's own time is the clock's instant
            now = event.occurred_at if micros == own_micros else self._instant(micros)
            if micros >= floor_micros():
                self._fire(line_no, now)
            result = apply(event, now)
            if result.effects:
                count(result.effects)
                self._write((line_no, 1, 0, ""), result.effects)
            verdict = result.verdict
            if verdict == "applied":
                summary.applied += 1
            elif verdict == "duplicate":
                summary.duplicates += 1
            else:
                assert result.error is not None
                self._refuse((line_no, 1, 0, ""), result.error, raw)
        self._fire_before(position, first + chunk.count, clock, valid, first)
        return self._take()

    def finish(self, lines: int, end: int | None) -> Tagged:
        """What is due by the instant the replay ends at, placed after the last line."""
        if end is not None:
            self._fire(lines + 1, _instant(end))
        return self._take()

    def _fire_before(self, lo: int, hi: int, clock: array[int], valid: bytes, first: int) -> None:
        """Fire what falls due on the valid lines in [lo, hi), where the one-process replay
        fires it: the clock never goes back, so the next such line is found by bisection."""
        lo -= first
        hi -= first
        while lo < hi and self.engine.wheel.floor.year != 9999:
            at = bisect_left(clock, self._floor_micros(), lo, hi)
            while at < hi and not valid[at]:
                at += 1
            if at >= hi:
                return
            self._fire(first + at, self._instant(clock[at]))
            lo = at + 1

    def _fire(self, line_no: int, now: datetime) -> None:
        count = self.summary.count_effects
        for order_id, when, fired in self.engine.fire_due(now):
            if fired:
                count(fired)
                self._write((line_no, 0, _micros(when), order_id), fired)

    def _floor_micros(self) -> int:
        """The wheel's floor in µs (converted only when it moved)."""
        floor = self.engine.wheel.floor
        if floor is not self._floor:
            self._floor, self._floor_us = floor, _micros(floor)
        return self._floor_us

    def _instant(self, micros: int) -> datetime:
        """The clock as an instant (converted only when it moved)."""
        if micros != self._clock_us:
            self._clock_us, self._now = micros, _instant(micros)
        return self._now

    def _write(self, place: Place, effects: list[Effect]) -> None:
        dumps = orjson.dumps
        actions, notifications, _, status = self._out
        for topic, record in route(effects, None):  # in replay an action fires at its deadline
            (actions if topic == ACTIONS else notifications).append(
                (place, dumps(record, option=_LINE))
            )
        if self.status:
            for record in status_records(effects, None):
                status.append((place, dumps(record, option=_LINE)))

    def _refuse(self, place: Place, error: InputError, raw: bytes) -> None:
        self.summary.dead_letters[error.code] += 1
        self._out[2].append((place, orjson.dumps(dead_letter(error, raw), option=_LINE)))

    def _take(self) -> Tagged:
        out, self._out = self._out, ([], [], [], [])
        return out


def _shard_main(
    index: int,
    jobs: int,
    path: Path,
    policy: Policy,
    status: bool,
    inbox: Any,
    outbox: Any,
    progress: Any,
) -> None:
    """A shard process: step 1 of chunk k + 1, then step 2 of chunk k, and so on."""
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        shard = _Shard(policy, status)
        pending: _Chunk | None = None
        for chunk in _chunks(path, index, jobs, progress if index == 0 else None):
            outbox.put(("read", chunk.first, chunk.count, *chunk.times()))
            if pending is not None:
                outbox.put(("out", shard.run(pending, *_clock_message(inbox.get()))))
            pending = chunk
            gc.freeze()  # the engine's state is acyclic and long-lived: not walked again
        outbox.put(("eof",))
        if pending is not None:
            outbox.put(("out", shard.run(pending, *_clock_message(inbox.get()))))
        lines, end = inbox.get()
        outbox.put(("out", shard.finish(lines, end)))
        outbox.put(("summary", shard.summary))
    except BaseException as error:  # the parent raises it
        outbox.put(("error", error))
        raise
    finally:
        outbox.close()
        outbox.join_thread()


def _clock_message(message: tuple[bytes, bytes]) -> tuple[array[int], bytes]:
    clock_bytes, valid = message
    clock = array("q")
    clock.frombytes(clock_bytes)
    return clock, valid


@dataclass(slots=True)
class _Clock:
    """The parent's running clock: the largest valid `occurred_at` so far."""

    latest: int = _INVALID
    lines: int = 0

    def chunk(
        self, first: int, count: int, answers: list[tuple[bytes, bytes]]
    ) -> tuple[bytes, bytes]:
        """From the shards' (line numbers, occurred_at or _INVALID) of their lines in a chunk:
        the clock at each of its lines (a line that is not a valid event has the clock of the
        line before it, so the clock never goes back) and which lines are valid events."""
        clock = array("q", [_INVALID]) * count
        for numbers_bytes, times_bytes in answers:
            numbers, times = array("q"), array("q")
            numbers.frombytes(numbers_bytes)
            times.frombytes(times_bytes)
            for number, micros in zip(numbers, times, strict=True):
                clock[number - first] = micros
        valid = bytearray(count)
        latest = self.latest
        for i in range(count):
            micros = clock[i]
            if micros != _INVALID:
                valid[i] = 1
                if micros > latest:
                    latest = micros
            clock[i] = latest
        self.latest = latest
        self.lines = first + count - 1
        return clock.tobytes(), bytes(valid)

    def end(self, until: datetime | None) -> int | None:
        """The instant the replay ends at: `until` if later than the clock, else the clock."""
        if self.latest == _INVALID:
            return None if until is None else _micros(until)
        if until is not None and _micros(until) > self.latest:
            return _micros(until)
        return self.latest


def replay_jobs(
    events: Path,
    out_dir: Path,
    policy: Policy,
    jobs: int,
    until: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
    status: bool = False,
) -> Summary:
    """`replay` over `jobs` processes, sharded by order; the same files, byte for byte."""
    try:
        total = events.stat().st_size
    except OSError as exc:
        raise ConfigError(f"cannot read {events}: {exc.strerror or exc}") from exc
    make_output_folder(out_dir)
    names = [ACTIONS_FILE, NOTIFICATIONS_FILE, DEADLETTER_FILE] + ([STATUS_FILE] if status else [])
    context = multiprocessing.get_context("fork")
    done = context.Value("q", 0, lock=False)
    inboxes = [context.Queue() for _ in range(jobs)]
    outboxes = [context.Queue() for _ in range(jobs)]
    shards = [
        context.Process(
            target=_shard_main,
            args=(i, jobs, events, policy, status, inboxes[i], outboxes[i], done),
            name=f"replay-shard-{i}",
            daemon=True,
        )
        for i in range(jobs)
    ]
    for shard in shards:
        shard.start()
    summary = Summary()
    try:
        with ExitStack() as stack:
            files = [
                stack.enter_context((out_dir / name).open("wb", buffering=_BUFFER))
                for name in names
            ]
            receiver = _Receiver(outboxes, shards, lambda: progress and progress(done.value, total))
            clock = _Clock()
            steps = 0
            while True:
                answers = receiver.all()
                if answers[0][0] == "eof":
                    break
                first, count = answers[0][1], answers[0][2]
                message = clock.chunk(first, count, [answer[3:] for answer in answers])
                for inbox in inboxes:
                    inbox.put(message)
                if steps:
                    _write_merged(files, [answer[1] for answer in receiver.all()])
                steps += 1
            if steps:
                _write_merged(files, [answer[1] for answer in receiver.all()])
            for inbox in inboxes:
                inbox.put((clock.lines, clock.end(until)))
            _write_merged(files, [answer[1] for answer in receiver.all()])
            for answer in receiver.all():
                _add(summary, answer[1])
            summary.read = clock.lines
        if progress is not None:
            progress(total, total)
    except BaseException:
        for shard in shards:  # nothing more to wait for
            shard.kill()
        raise
    finally:
        for shard in shards:
            shard.join(timeout=5)
            if shard.is_alive():
                shard.kill()
    return summary


class _Receiver:
    """The next message of every shard, in shard order; a shard's error is raised here."""

    def __init__(self, outboxes: list[Any], shards: list[Any], tick: Callable[[], Any]) -> None:
        self.outboxes, self.shards, self.tick = outboxes, shards, tick

    def all(self) -> list[tuple[Any, ...]]:
        return [self._one(outbox) for outbox in self.outboxes]

    def _one(self, outbox: Any) -> tuple[Any, ...]:
        while True:
            try:
                message: tuple[Any, ...] = outbox.get(timeout=0.5)
                break
            except queue.Empty:
                self.tick()
                for shard, its_outbox in zip(self.shards, self.outboxes, strict=True):
                    if shard.exitcode not in (None, 0):
                        _raise_its_error(its_outbox)
                        raise ShardError(
                            f"{shard.name} ended (exit code {shard.exitcode}) before its "
                            "answer; the output files are incomplete"
                        ) from None
        self.tick()
        if message[0] == "error":
            raise message[1]
        return message


def _raise_its_error(outbox: Any) -> None:
    """Raise the error a dead shard sent before it ended, if it sent one."""
    while True:
        try:
            message = outbox.get(timeout=0.1)
        except queue.Empty:
            return
        if message[0] == "error":
            raise message[1]


def _write_merged(files: list[BinaryIO], tagged: list[Tagged]) -> None:
    """The shards' outputs of one step, each file's lines in the one-process replay's order."""
    for i, out in enumerate(files):
        write = out.write
        parts = [lines[i] for lines in tagged if lines[i]]
        if len(parts) == 1:
            for _, line in parts[0]:
                write(line)
            continue
        for _, line in heapq.merge(*parts, key=itemgetter(0)):
            write(line)


def _add(summary: Summary, part: Summary) -> None:
    summary.applied += part.applied
    summary.duplicates += part.duplicates
    summary.dead_letters.update(part.dead_letters)
    summary.actions.update(part.actions)
    summary.reminders += part.reminders
    summary.paid_orders += part.paid_orders
    summary.refunded_orders += part.refunded_orders
    summary.forgotten_orders += part.forgotten_orders


def default_jobs() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0))
