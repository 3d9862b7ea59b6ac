"""`aftersale worker`: the faust app that drives the engine live, on the wall clock.

    order-events ─┐
    aftersale-events ─┼─> one agent (per partition, in order) ─> engine ─> actions, reminders,
    <app>-ticks ──┘                                                       dead letters
                        timer: due index + catch-up watermark ─> tick records ─┘

* State: one OrderState per order in the `orders` table (RocksDB or memory), bytes via
  `state_codec`, co-partitioned with both inputs (same key, same partition count).
* Deadlines: each partition has its own engine with a timer wheel, rebuilt from the table when
  the partition is assigned and dropped when revoked. A guarded timer finds partitions with
  something due and writes a small tick record to that partition of the internal ticks topic;
  the agent fires on the tick, inside stream iteration, so the table change, the outputs and
  the offsets share faust's transaction (exactly_once). Ticks are at-least-once; a duplicate
  finds nothing due. Ticks go through a plain producer of their own: faust's transactional
  producer stalls when used outside stream iteration.
* Catch-up safety (`catchup.py`): a tick fires only deadlines up to the latest instant whose
  sampled end offsets of both input partitions have been processed. A record whose occurred_at
  is at or after a due deadline of its own case fires that deadline before it is applied.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass, field
from typing import Any

import faust
import orjson
from aiokafka.structs import TopicPartition

from streams import faust_fixes
from streams.catchup import PartitionWatermark
from streams.clock import Clock, SystemClock
from streams.deadletters import dead_letter
from streams.effects import Action, Effect, Reminder
from streams.engine import Engine
from streams.errors import InputError, SchemaViolation
from streams.events import AFTERSALE_TOPIC, ORDER_TOPIC, decode
from streams.policy import Policy, load_policy
from streams.settings import Settings
from streams.side_clients import SideClients
from streams.table_store import TableStore, partition_of
from streams.times import EPOCH

log = logging.getLogger("aftersale.worker")

#: Re-send a tick for a partition when the last one has not been handled after this long.
TICK_RESEND_S = 1.0


@dataclass(slots=True)
class PartitionRuntime:
    """What a worker keeps in memory for one partition it owns as active."""

    engine: Engine
    watermark: PartitionWatermark
    tick_sent: float | None = None


@dataclass(slots=True)
class Runtime:
    """Per-partition engines and watermarks of this worker."""

    settings: Settings
    policy: Policy
    store: TableStore
    inputs: tuple[str, str]
    parts: dict[int, PartitionRuntime] = field(default_factory=dict)
    #: Partitions whose due index was rebuilt and whose start offsets are known.
    ready: set[int] = field(default_factory=set)

    def part(self, partition: int) -> PartitionRuntime:
        runtime = self.parts.get(partition)
        if runtime is None:
            runtime = PartitionRuntime(
                Engine(self.policy, store=self.store), PartitionWatermark(self.inputs)
            )
            self.parts[partition] = runtime
        return runtime

    def reassign(self, active: set[int]) -> set[int]:
        """Drop revoked partitions; index the due times of newly assigned ones from the table.

        The agent may already have created a partition's runtime (records can arrive before
        the first timer run); it still counts as new until it has been indexed here.
        """
        for gone in set(self.parts) - active:
            del self.parts[gone]
        self.ready &= active
        new = active - self.ready
        for partition in new:
            self.part(partition)
        if new:
            n = self.settings.partitions
            by_partition: dict[int, list[str]] = {p: [] for p in new}
            for order_id in self.store:
                keys = by_partition.get(partition_of(order_id, n))
                if keys is not None:
                    keys.append(order_id)
            for partition, keys in by_partition.items():
                due = self.parts[partition].engine.rebuild(keys)
                log.info("partition %d: %d orders, %d with a deadline", partition, len(keys), due)
            self.ready |= new
        return new


def ticks_topic(settings: Settings) -> str:
    """The internal topic of tick records, co-partitioned with the inputs."""
    return f"{settings.app_id}-ticks"


def build_app(settings: Settings, clock: Clock | None = None) -> faust.App:
    """The faust app for these settings; `clock` defaults to the wall clock."""
    faust_fixes.apply()
    clock = clock or SystemClock()
    policy = load_policy(settings.policy_file)
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{host.strip()}" for host in settings.kafka_bootstrap.split(",")],
        broker_credentials=_credentials(settings),
        store="rocksdb://" if settings.store == "rocksdb" else "memory://",
        datadir=str(settings.data_dir),
        processing_guarantee=settings.processing_guarantee,
        topic_partitions=settings.partitions,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=0.5,
        table_standby_replicas=0,
        web_port=settings.web_port,
        web_bind="127.0.0.1",
    )
    order_name, aftersale_name = settings.topic(ORDER_TOPIC), settings.topic(AFTERSALE_TOPIC)
    ticks_name = ticks_topic(settings)
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    inputs = app.topic(order_name, aftersale_name, ticks_name, **raw)
    actions = app.topic(settings.topic("aftersale-actions"), **raw)
    notifications = app.topic(settings.topic("aftersale-notifications"), **raw)
    deadletters = app.topic(settings.topic("aftersale-deadletter"), **raw)
    table = app.Table("orders", partitions=settings.partitions)
    # Tables take their serializers from key/value types ("json" for bytes) and build their
    # changelog topic with them at once: switch both to raw, so values are our bytes end to end
    # and changelog recovery reads back what was written.
    table.key_serializer = table.value_serializer = "raw"  # type: ignore[attr-defined]
    table.changelog_topic = table._new_changelog_topic()  # type: ignore[attr-defined]
    runtime = Runtime(settings, policy, TableStore(table), (order_name, aftersale_name))
    contract_topic = {order_name: ORDER_TOPIC, aftersale_name: AFTERSALE_TOPIC}
    side = SideClients(settings.client_options(), settings.app_id)

    async def emit(effects: list[Effect], partition: int) -> None:
        fired_at = clock.now()
        for effect in effects:
            if isinstance(effect, Action):
                value = orjson.dumps(effect.record(fired_at))
                await actions.send(key=effect.order_id.encode(), value=value, partition=partition)
            elif isinstance(effect, Reminder):
                value = orjson.dumps(effect.record())
                await notifications.send(
                    key=effect.order_id.encode(), value=value, partition=partition
                )

    async def refuse(error: InputError, key: bytes | None, message: Any) -> None:
        record = dead_letter(
            error, message.value or b"", message.topic, message.partition, message.offset
        )
        await deadletters.send(key=key, value=orjson.dumps(record), partition=message.partition)

    @app.agent(inputs)
    async def process(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            partition, topic = message.partition, message.topic
            part = runtime.part(partition)
            if topic == ticks_name:
                part.tick_sent = None
                safe = part.watermark.safe_until()
                if safe is not None:
                    await emit(part.engine.advance(min(clock.now(), safe)), partition)
                continue
            raw_value: bytes = message.value or b""
            try:
                decoded = decode(raw_value, topic=contract_topic[topic])
                if message.key is not None and message.key != decoded.order_id.encode():
                    raise SchemaViolation(
                        f"record key {message.key!r} is not the order_id {decoded.order_id!r}"
                    )
            except InputError as error:
                await refuse(error, message.key, message)
                part.watermark.processed(topic, message.offset)
                continue
            now = clock.now()
            # Order facts never decide a case: they fire nothing (an unread after-sale record
            # on the other topic could still be in time).
            upto = min(now, decoded.occurred_at) if topic == aftersale_name else EPOCH
            result = part.engine.apply(decoded, upto)
            await emit(result.effects, partition)
            if result.error is not None:
                await refuse(result.error, decoded.order_id.encode(), message)
            part.watermark.processed(topic, message.offset)

    @app.timer(settings.tick_interval)  # type: ignore[untyped-decorator]
    async def check_deadlines() -> None:
        # An exception escaping a timer crashes the worker: log it and try again next tick.
        try:
            await _check(app, runtime, clock, ticks_name, side)
        except Exception:
            log.exception("deadline check failed; retrying on the next tick")

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def stop_side_clients(app: faust.App, **kwargs: Any) -> None:
        await side.close()

    return app


async def _check(
    app: faust.App,
    runtime: Runtime,
    clock: Clock,
    ticks_name: str,
    side: SideClients,
) -> None:
    if app.rebalancing or not app.tables.actives_ready:
        return
    aftersale_name = runtime.inputs[1]
    active = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == aftersale_name}
    new = runtime.reassign(active)
    tps = [TopicPartition(t, p) for p in sorted(active) for t in runtime.inputs]
    if not tps:
        return
    if new:
        # Reading resumes at the committed offset: everything before it was processed.
        starts = await side.start_offsets(tp for tp in tps if tp.partition in new)
        for tp, offset in starts.items():
            runtime.parts[tp.partition].watermark.start_at(tp.topic, offset)
    sampled_at = clock.now()  # before the request: the answer covers everything before it
    ends = await side.end_offsets(tps)
    now = clock.now()
    for partition in active:
        part = runtime.parts[partition]
        part.watermark.sample(
            sampled_at, {t: ends[TopicPartition(t, partition)] for t in runtime.inputs}
        )
        wake, safe = part.engine.next_wakeup(), part.watermark.safe_until()
        if wake is None or safe is None or wake > min(now, safe):
            continue
        loop_now = asyncio.get_running_loop().time()
        if part.tick_sent is not None and loop_now - part.tick_sent < TICK_RESEND_S:
            continue
        await side.tick(ticks_name, partition)
        part.tick_sent = loop_now


def _credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    protocol = settings.kafka_security_protocol
    context = None
    if protocol.endswith("SSL"):
        cafile = str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
        context = ssl.create_default_context(cafile=cafile)
    if protocol.startswith("SASL_"):
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.value,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None
