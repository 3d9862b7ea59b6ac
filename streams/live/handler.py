"""What the worker does with one input record, without faust (pure: no I/O).

The agent feeds every record of its three inputs here, in order, inside stream iteration:

    order-events / aftersale-events:  decode, check the key, apply to the order's state
                                      (firing that order's due deadlines first, as replay does)
    <app>-ticks:                      nothing of its own: the timer asked for a chance to fire
    then, for any record:             fire every deadline of the partition that is due on the
                                      wall clock and safe by catch-up (`catchup.py`)

Everything decided goes into the partition's outbox (`outbox.py`): state changes, actions,
reminders and dead letters leave only with the partition's next transaction.
"""

from __future__ import annotations

from datetime import datetime

import orjson

from streams.contract.deadletters import dead_letter, dead_letter_key
from streams.contract.events import check_key, decode
from streams.contract.times import EPOCH
from streams.contract.topics import DEADLETTER, OUTPUTS
from streams.errors import InputError
from streams.live.outbox import Outbox
from streams.live.runtime import PartitionRuntime, Runtime
from streams.live.settings import TopicNames
from streams.rules.effects import Effect, route


class RecordHandler:
    """Applies the worker's input records to the partitions' engines and outboxes."""

    def __init__(self, runtime: Runtime, topics: TopicNames) -> None:
        self.runtime = runtime
        self.topics = topics
        self.keep_orders = runtime.policy.order_retention is not None
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
    ) -> None:
        """One record of `topic` (this environment's name) at `partition`/`offset`, read at
        `now` on the wall clock."""
        part = self.runtime.part(partition)
        # Read, for catch-up and for the commit (which cannot run before this record is done,
        # and never runs once processing has failed).
        part.watermark.processed(topic, offset)
        if topic == self.topics.ticks:
            part.tick_sent = None
        else:
            self._apply(part, topic, partition, offset, key, value or b"", now)
        # Fire what is due and safe: a tick asks for it, any other record is a free chance to
        # (under load, deadlines fire without waiting for a tick).
        wake = part.engine.next_wakeup()
        if wake is not None and wake <= now:
            safe = part.watermark.safe_until()
            if safe is not None and wake <= safe:
                self.emit(part.engine.advance(min(now, safe)), part.outbox, now)

    def _apply(
        self,
        part: PartitionRuntime,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes,
        now: datetime,
    ) -> None:
        """Decode and apply one input record, or refuse it into a dead letter."""
        outbox = part.outbox
        try:
            event = decode(value, topic=self._contract_name[topic])
            check_key(key, event.order_id)
        except InputError as error:
            self.refuse(error, dead_letter_key(value, key), value, topic, partition, offset, outbox)
            return
        # Order facts never decide a case on arrival: they fire nothing of their own (an
        # unread after-sale record on the other topic could still be in time).
        upto = min(now, event.occurred_at) if topic == self.topics.aftersales else EPOCH
        forget_upto = None  # no retention: nothing to forget
        if self.keep_orders:
            # An order past its retention is forgotten before any record, but only once every
            # record written before that instant has been read (one could have kept the order).
            safe = part.watermark.safe_until()
            forget_upto = EPOCH if safe is None else min(now, safe)
        result = part.engine.apply(event, upto, forget_upto)
        self.emit(result.effects, outbox, now)
        if result.error is not None:
            key = event.order_id.encode()
            self.refuse(result.error, key, value, topic, partition, offset, outbox)

    def emit(self, effects: list[Effect], outbox: Outbox, fired_at: datetime) -> None:
        """Queue the output records of `effects` (actions stamped `fired_at`)."""
        output = self._output
        for contract_topic, record in route(effects, fired_at):
            key = record["order_id"].encode()
            outbox.emit(output[contract_topic], key, orjson.dumps(record))

    def refuse(
        self,
        error: InputError,
        key: bytes | None,
        value: bytes,
        topic: str,
        partition: int,
        offset: int,
        outbox: Outbox,
    ) -> None:
        """Queue the dead letter of a record that cannot be applied."""
        record = dead_letter(error, value, topic, partition, offset)
        outbox.emit(self._output[DEADLETTER], key, orjson.dumps(record))
