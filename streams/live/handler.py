"""What the worker does with one input record, without faust (pure: no I/O).

The agent feeds every record of its inputs here, in each topic's order, inside stream
iteration:

    <app>-ticks:        nothing of its own: the timer asked for a chance to fire
    order-events / aftersale-events / <app>-reroute:
                        held until every record of the partition's other inputs appended
                        before it has been judged (`merge.py`), then, in its turn:
      - on another partition than murmur2 of its key gives (a producer partitioning
        otherwise): rerouted to its order's partition through <app>-reroute, with its append
        time and where it came from, and judged there. (In its turn like any other: rerouted
        on arrival, it moved the committed position past records still held, which a
        kill -9 then lost.)
      - else: decode, check the key, apply to the order's state (firing that order's due
        deadlines first, as replay does)
    then, for any record: fire the deadlines of the partition that are due on the wall clock
                        and safe by catch-up (`catchup.py`): up to FIRE_PER_TICK on a tick
                        (fewer while input waits to be read), FIRE_PER_RECORD on any other
                        record; the timer sends the next tick while more are due

The timer calls `release` after each end-offset sample: held records the sample allows are
judged then. Everything decided goes into the partition's outbox (`outbox.py`): state changes,
actions, reminders, rerouted records and dead letters leave only with the partition's next
transaction.
"""

from __future__ import annotations

from datetime import datetime

import orjson

from streams.contract.deadletters import dead_letter, dead_letter_key
from streams.contract.events import check_key, decode
from streams.contract.times import EPOCH
from streams.contract.topics import DEADLETTER, OUTPUTS
from streams.errors import InputError, SchemaViolation
from streams.live.merge import Held
from streams.live.outbox import Outbox, Output
from streams.live.partitioning import Partitioner
from streams.live.runtime import PartitionRuntime, Runtime
from streams.live.settings import TopicNames
from streams.rules.effects import Effect, route
from streams.rules.status import status_records

#: Due entries fired per tick, and per other record, at most. A promotion's million deadlines
#: due in the same second fired in one call held the event loop for minutes (no input read, no
#: commit, one huge transaction); in chunks, input records are read between them. Measured
#: with bench/burst.py (100,000 due at once, 1,500 records/s ingested meanwhile): 1,000 per
#: tick drained 7,400 fires/s (the tick's round trip bounds it), 2,500 9,300 and 5,000 11,600
#: (a tick of 5,000 holds the loop about half a second); 20 per record slowed reading during
#: the drain (each record paid for 20 fires), 2 keeps a busy partition's deadlines moving
#: between ticks.
FIRE_PER_TICK = 5_000
FIRE_PER_RECORD = 2
#: Input goes first: while the newest end-offset sample shows more than BEHIND records of the
#: partition's inputs not yet read, a tick fires only FIRE_PER_TICK_BEHIND. A million
#: deadlines due at once, 1,500 records/s ingested meanwhile (bench/stream.py (e)): with 5,000
#: per tick regardless they drained at 10,700/s and input fell 71 s behind; with 250 while
#: more than 500 wait, 5,200/s and input within 10 s; with these, 8,450/s and input within
#: 25 s. The CPU is the bound: fires and input share the worker's one core.
BEHIND = 1_000
FIRE_PER_TICK_BEHIND = 1_000

#: The header of a rerouted record that says where it was appended first: topic:partition:offset
ORIGIN_HEADER = "aftersale-origin"


class RecordHandler:
    """Applies the worker's input records to the partitions' engines and outboxes."""

    def __init__(self, runtime: Runtime, topics: TopicNames, feed_status: bool = True) -> None:
        self.runtime = runtime
        self.topics = topics
        self.keep_orders = runtime.policy.order_retention is not None
        self.owner = Partitioner(runtime.settings.partitions)
        #: Write the read side's feed (`streams/rules/status.py`) to `topics.status`.
        self.feed_status = feed_status
        # looked up per record: built once
        self._contract_name = {name: topics.contract_name(name) for name in topics.inputs}
        self._output = {name: topics.output(name) for name in OUTPUTS}

    def handle(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        now: datetime,
        at: float = 0.0,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """One record of `topic` (this environment's name) at `partition`/`offset`, appended at
        `at` (its timestamp, seconds), read at `now` on the wall clock."""
        part = self.runtime.part(partition)
        if topic == self.topics.ticks:
            part.watermark.processed(topic, offset)
            part.tick_sent = None
            behind = sum(part.watermark.lag().values()) > BEHIND
            self._fire(part, now, FIRE_PER_TICK_BEHIND if behind else FIRE_PER_TICK)
            return
        origin = _origin(headers) if topic == self.topics.reroute else None
        part.merge.offer(Held(topic, offset, at, key, value or b"", origin, now))
        self._judge_ready(part, partition, now)
        self._fire(part, now, FIRE_PER_RECORD)

    def release(self, partition: int, now: datetime) -> None:
        """Judge the held records of `partition` that a new end-offset sample allows.

        (Their outputs commit with their offsets, which the agent has already passed. Due
        deadlines are not fired here but on the tick the timer sends: an output with no input
        offset to commit beside it would wait in the outbox for the next input record.)"""
        part = self.runtime.parts.get(partition)
        if part is not None:
            self._judge_ready(part, partition, now)

    def _fire(self, part: PartitionRuntime, now: datetime, limit: int) -> None:
        # Fire what is due and safe, up to `limit` entries: a tick asks for it, any other
        # record is a free chance to (under load, deadlines fire without waiting for a tick).
        wake = part.engine.next_wakeup()
        if wake is not None and wake <= now:
            safe = self.runtime.safe_until(part)
            if safe is not None and wake <= safe:
                self.emit(part.engine.advance(min(now, safe), limit), part.outbox, now)

    def _judge_ready(self, part: PartitionRuntime, partition: int, now: datetime) -> None:
        watermark, waits = part.watermark, part.outbox.tally.waits
        for held in part.merge.ready(watermark.passed):
            # Read, for catch-up and for the commit (which cannot run before this record is
            # done, and never runs once processing has failed).
            watermark.processed(held.topic, held.offset)
            if held.read_at is not None:
                waits.append((now - held.read_at).total_seconds())
            key = held.key
            if held.origin is None and key is not None and self.owner(key) != partition:
                # rerouted in its turn too: the committed position never passes a held record
                self._reroute(part, held, partition)
            else:
                self._apply(part, held, partition, now)

    def _reroute(self, part: PartitionRuntime, held: Held, partition: int) -> None:
        """A record its producer put on another partition than its order's: send it there, in
        this partition's transaction, keeping its append time and where it came from."""
        assert held.key is not None
        origin = f"{held.topic}:{partition}:{held.offset}".encode()
        part.outbox.emit_to(
            Output(
                self.topics.reroute,
                held.key,
                held.value,
                partition=self.owner(held.key),
                timestamp_ms=round(held.at * 1000),
                headers=((ORIGIN_HEADER, origin),),
            )
        )
        part.outbox.tally.rerouted()

    def _apply(self, part: PartitionRuntime, held: Held, partition: int, now: datetime) -> None:
        """Decode and apply one input record, or refuse it into a dead letter."""
        outbox, value, key = part.outbox, held.value, held.key
        topic, where = held.topic, (held.topic, partition, held.offset)
        if held.origin is not None:  # rerouted: judged as a record of where it came from
            topic, where = held.origin[0], held.origin
        try:
            contract_topic = self._contract_name.get(topic)
            if contract_topic is None:  # on the reroute topic, but not put there by a worker
                raise SchemaViolation(f"a rerouted record needs a valid {ORIGIN_HEADER} header")
            event = decode(value, topic=contract_topic)
            check_key(key, event.order_id)
        except InputError as error:
            self.refuse(error, dead_letter_key(value, key), value, where, outbox)
            return
        # Order facts never decide a case on arrival: they fire nothing of their own (an
        # unread after-sale record on the other topic could still be in time).
        upto = min(now, event.occurred_at) if topic == self.topics.aftersales else EPOCH
        forget_upto = None  # no retention: nothing to forget
        if self.keep_orders:
            # An order past its retention is forgotten before any record, but only once every
            # record written before that instant has been read (one could have kept the order).
            safe = self.runtime.safe_until(part)
            forget_upto = EPOCH if safe is None else min(now, safe)
        result = part.engine.apply(event, upto, forget_upto)
        self.emit(result.effects, outbox, now)
        if result.error is not None:
            self.refuse(result.error, event.order_id.encode(), value, where, outbox)
        elif result.verdict == "duplicate":
            outbox.tally.duplicate()

    def emit(self, effects: list[Effect], outbox: Outbox, fired_at: datetime) -> None:
        """Queue the output records of `effects` (actions stamped `fired_at`), the read side's
        feed, and their counts."""
        if not effects:
            return
        output, dumps = self._output, orjson.dumps
        for contract_topic, record in route(effects, fired_at):
            outbox.emit(output[contract_topic], record["order_id"].encode(), dumps(record))
        if self.feed_status:
            status = self.topics.status
            for record in status_records(effects, fired_at):
                outbox.emit(status, record["order_id"].encode(), dumps(record))
        outbox.tally.effects(effects, fired_at)

    def refuse(
        self,
        error: InputError,
        key: bytes | None,
        value: bytes,
        where: tuple[str, int, int],
        outbox: Outbox,
    ) -> None:
        """Queue the dead letter of a record that cannot be applied, read at `where`."""
        record = dead_letter(error, value, *where)
        outbox.emit(self._output[DEADLETTER], key, orjson.dumps(record))
        outbox.tally.dead_letter(error.code)


def _origin(headers: list[tuple[str, bytes]] | None) -> tuple[str, int, int] | None:
    """Where a rerouted record was appended first, from its header (None: no valid one)."""
    for name, raw in headers or ():
        if name == ORIGIN_HEADER:
            text = raw.decode("utf-8", "replace")
            topic, partition, offset = [*text.rsplit(":", 2), "", ""][:3]
            if topic and partition.isdigit() and offset.isdigit():
                return topic, int(partition), int(offset)
    return None
