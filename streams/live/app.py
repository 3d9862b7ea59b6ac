"""`aftersale worker`: the faust app that drives the engine live, on the wall clock.

    order-events ─┐
    aftersale-events ─┼─> one agent (per partition, in order) ─> engine ─> actions, reminders,
    <app>-ticks ──┘                                                       dead letters
                        timer: due index + catch-up watermark ─> tick records ─┘

* State: one OrderState per order in the `orders` table (RocksDB or memory), bytes via
  `state_codec`, co-partitioned with both inputs (same key, same partition count).
* Exactly once (`outbox.py`, `eos_commit.py`): processing a record does no I/O. State changes
  and output records wait in the partition's outbox; at each commit they go into the
  partition's transaction together with the input offsets, and reach the local store only
  once that transaction has committed.
* Deadlines: each partition has its own engine with a timer wheel, built from the table when
  the partition is assigned; a revoked one is parked and reused if the partition comes back
  unchanged (`runtime.py`). A guarded timer finds partitions with something due and writes a
  small tick record to that partition of the internal ticks topic; the agent fires on the
  tick, inside stream iteration, in input order. Ticks are at-least-once; a duplicate finds
  nothing due. Ticks go through a plain producer of their own: faust's transactional producer
  stalls when used outside stream iteration.
* Catch-up safety (`catchup.py`): a tick fires only deadlines up to the latest instant whose
  sampled end offsets of both input partitions have been processed. A record whose occurred_at
  is at or after a due deadline of its own case fires that deadline before it is applied.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from datetime import datetime
from typing import Any

import faust
import orjson
from aiokafka.structs import TopicPartition
from faust.sensors.monitor import Monitor

from streams.contract.deadletters import dead_letter, dead_letter_key
from streams.contract.events import AFTERSALE_TOPIC, ORDER_TOPIC, check_key, decode
from streams.contract.times import EPOCH
from streams.errors import InputError
from streams.live.outbox import Outbox
from streams.live.runtime import PartitionRuntime, Runtime
from streams.live.settings import Settings
from streams.live.side_clients import SideClients
from streams.patches import eos_commit
from streams.patches import fetch_stall as fetch_fix
from streams.patches import handoff as faust_speedups
from streams.patches import recovery as faust_fixes
from streams.patches.eos_commit import CommitHook
from streams.rules.clock import Clock, SystemClock
from streams.rules.effects import Action, Effect, Reminder
from streams.rules.policy import load_policy

log = logging.getLogger("aftersale.worker")

#: Re-send a tick for a partition when the last one has not been handled after this long.
TICK_RESEND_S = 1.0


#: faust settings for throughput, measured with bench/stream.py (a) and bench/faust_probe.py.
FAUST_TUNING: dict[str, Any] = {
    # a commit sends each partition's outbox as one record batch per topic (eos_commit)
    "producer_max_batch_size": 512 * 1024,
    # Room for whole fetches between the fetcher and the agent: with faust's default (4096)
    # the queue is full under load and every hand-off blocks (a do-nothing agent: 13.8k -> 23k
    # records/s). At a rate the worker keeps up with, the queue stays short.
    "stream_buffer_maxsize": 32768,
    "consumer_max_fetch_size": 4 * 1024 * 1024,
    # faust's repaired Cython fast path (off by default while new): the stream takes a record
    # already waiting in its queue without awaiting the queue. Same records, same order; the
    # other repaired path (decode once for several channels) never applies to one agent. Worker
    # over 150,000 requests, six interleaved rounds: median 21,398 -> 23,835 records/s, CPU per
    # record 41.3 -> 38.7 us; faster in every round.
    "cython_optimizations": True,
}


def ticks_topic(settings: Settings) -> str:
    """The internal topic of tick records, co-partitioned with the inputs."""
    return f"{settings.app_id}-ticks"


def build_app(settings: Settings, clock: Clock | None = None, replication: int = 1) -> faust.App:
    """The faust app for these settings; `clock` defaults to the wall clock; `replication` is
    the replication factor of the state changelog topic when faust creates it."""
    faust_fixes.apply()
    fetch_fix.apply()
    faust_speedups.install()
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
        topic_replication_factor=replication,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=0.5,
        **FAUST_TUNING,
        table_standby_replicas=0,
        web_port=settings.web_port,
        web_bind=settings.web_bind,
        monitor=LeanMonitor(),
        # faust reads unprefixed variables (WEB_PORT, PROCESSING_GUARANTEE, ...) over the values
        # given here: a Kubernetes service link `WEB_PORT=tcp://...` crashed the worker, and a
        # stray PROCESSING_GUARANTEE would turn exactly-once off. Settings come from AFTERSALE_*.
        env={},
    )
    order_name, aftersale_name = settings.topic(ORDER_TOPIC), settings.topic(AFTERSALE_TOPIC)
    ticks_name = ticks_topic(settings)
    inputs = app.topic(order_name, aftersale_name, ticks_name, schema=RawSchema())
    actions_name = settings.topic("aftersale-actions")
    notifications_name = settings.topic("aftersale-notifications")
    deadletters_name = settings.topic("aftersale-deadletter")
    table = app.Table("orders", partitions=settings.partitions)
    # Tables take their serializers from key/value types ("json" for bytes) and build their
    # changelog topic with them at once: switch both to raw, so values are our bytes end to end
    # and changelog recovery reads back what was written.
    table.key_serializer = table.value_serializer = "raw"  # type: ignore[attr-defined]
    table.changelog_topic = table._new_changelog_topic()  # type: ignore[attr-defined]
    runtime = Runtime(settings, policy, table, (order_name, aftersale_name))
    commit_hook = CommitHook(
        table.changelog_topic.get_topic_name(), runtime.outbox, runtime.positions
    )
    eos_commit.register(app, commit_hook)
    contract_topic = {order_name: ORDER_TOPIC, aftersale_name: AFTERSALE_TOPIC}
    side = SideClients(settings.client_options(), settings.app_id)

    def emit(effects: list[Effect], outbox: Outbox, fired_at: datetime) -> None:
        for effect in effects:
            if isinstance(effect, Action):
                value = orjson.dumps(effect.record(fired_at))
                outbox.emit(actions_name, effect.order_id.encode(), value)
            elif isinstance(effect, Reminder):
                value = orjson.dumps(effect.record())
                outbox.emit(notifications_name, effect.order_id.encode(), value)

    def refuse(error: InputError, key: bytes | None, message: Any, outbox: Outbox) -> None:
        record = dead_letter(
            error, message.value or b"", message.topic, message.partition, message.offset
        )
        outbox.emit(deadletters_name, key, orjson.dumps(record))

    @app.agent(inputs)
    async def process(stream: Any) -> None:
        # No await in the body: a commit (eos_commit) can only happen between two records.
        async for event in stream.events():
            message = event.message
            partition, topic = message.partition, message.topic
            part = runtime.part(partition)
            now = clock.now()
            try:
                # Read, for catch-up and for the commit (which cannot run before this record is
                # done, and never runs once processing has failed).
                part.watermark.processed(topic, message.offset)
                if topic == ticks_name:
                    part.tick_sent = None
                else:
                    handle(message, part, now)
                # Fire what is due and safe: a tick asks for it, any other record is a free
                # chance to (under load, deadlines fire without waiting for a tick).
                wake = part.engine.next_wakeup()
                if wake is not None and wake <= now:
                    safe = part.watermark.safe_until()
                    if safe is not None and wake <= safe:
                        emit(part.engine.advance(min(now, safe)), part.outbox, now)
            except Exception as exc:
                # A bug, not bad input (that is a dead letter): whatever this record half did
                # must not commit. Stop committing, then stop the worker; its restart redoes
                # the record from the last commit.
                commit_hook.poisoned = exc
                log.exception("processing %s[%d]@%d failed", topic, partition, message.offset)
                await app.crash(exc)
                return

    def handle(message: Any, part: PartitionRuntime, now: datetime) -> None:
        """Decode and apply one input record (or refuse it into dead letters)."""
        topic, outbox = message.topic, part.outbox
        raw_value: bytes = message.value or b""
        try:
            decoded = decode(raw_value, topic=contract_topic[topic])
            check_key(message.key, decoded.order_id)
        except InputError as error:
            refuse(error, dead_letter_key(raw_value, message.key), message, outbox)
            return
        # Order facts never decide a case on arrival: they fire nothing of their own (an
        # unread after-sale record on the other topic could still be in time).
        upto = min(now, decoded.occurred_at) if topic == aftersale_name else EPOCH
        forget_upto = None  # no retention: nothing to forget
        if policy.order_retention is not None:
            # An order past its retention is forgotten before any record, but only once every
            # record written before that instant has been read (one could have kept the order).
            safe = part.watermark.safe_until()
            forget_upto = EPOCH if safe is None else min(now, safe)
        result = part.engine.apply(decoded, upto, forget_upto)
        emit(result.effects, outbox, now)
        if result.error is not None:
            refuse(result.error, decoded.order_id.encode(), message, outbox)

    @app.timer(settings.tick_interval)  # type: ignore[untyped-decorator]
    async def check_deadlines() -> None:
        # An exception escaping a timer crashes the worker: log it and try again next tick.
        try:
            await _check(app, runtime, clock, ticks_name, side)
        except Exception:
            log.exception("deadline check failed; retrying on the next tick")

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget_revoked(app: faust.App, revoked: Any, **kwargs: Any) -> None:
        # faust re-reads a partition it keeps from its committed offsets, so what the outbox
        # holds beyond them would be done twice: start from the committed state instead.
        runtime.forget({tp.partition for tp in revoked if tp.topic == aftersale_name})

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def forget_partitions_gone(app: faust.App, assigned: Any, **kwargs: Any) -> None:
        runtime.keep_only({tp.partition for tp in assigned if tp.topic == aftersale_name})

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
    generation = runtime.generation
    aftersale_name = runtime.inputs[1]
    active = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == aftersale_name}
    tps = [TopicPartition(t, p) for p in sorted(active) for t in runtime.inputs]
    if not tps:
        runtime.reassign(active)
        return
    # Reading resumes at the committed offset: everything before it was processed. Asked
    # before the partition counts as ready, so a failed request is simply asked again.
    starts: dict[TopicPartition, int] = {}
    if active - runtime.ready:
        starts = await side.start_offsets(tp for tp in tps if tp.partition not in runtime.ready)
        if runtime.generation != generation or app.rebalancing:
            return
    new = runtime.reassign(active)
    for tp, offset in starts.items():
        if tp.partition in new:
            runtime.parts[tp.partition].watermark.start_at(tp.topic, offset)
    sampled_at = clock.now()  # before the request: the answer covers everything before it
    ends = await side.end_offsets(tps)
    if runtime.generation != generation or app.rebalancing:
        return
    now = clock.now()
    for partition in active:
        part = runtime.parts.get(partition)
        if part is None or runtime.generation != generation:
            return
        part.watermark.sample(
            sampled_at, {t: ends[TopicPartition(t, partition)] for t in runtime.inputs}
        )
        wake, safe = part.engine.next_wakeup(), part.watermark.safe_until()
        if wake is not None and wake <= now and (safe is None or safe < wake):
            await _skip_marker_gaps(part, partition, side)
            if runtime.generation != generation:
                return
            safe = part.watermark.safe_until()
        if wake is None or safe is None or wake > min(now, safe):
            continue
        loop_now = asyncio.get_running_loop().time()
        if part.tick_sent is not None and loop_now - part.tick_sent < TICK_RESEND_S:
            continue
        # Marked before the send: the agent can read and handle the tick (clearing the mark)
        # before the send returns, and a mark set after that would hold the next tick back for
        # TICK_RESEND_S (deadlines on idle partitions fired up to a second late).
        part.tick_sent = loop_now
        try:
            await side.tick(ticks_name, partition)
        except BaseException:
            part.tick_sent = None
            raise


class RawSchema(faust.Schema[bytes, bytes]):
    """Records as they arrive: key and value bytes untouched (the agent decodes the value).

    faust's own schema runs both through its serializer registry per record, even "raw"
    (about 8% of the worker's CPU under load).
    """

    def compile(self, app: Any, **kwargs: Any) -> Any:
        event_class = app.conf.Event

        async def decode(message: Any, *, propagate: bool = False) -> Any:
            return event_class(app, message.key, message.value, message.headers, message)

        return decode


class LeanMonitor(Monitor):
    """faust's Monitor without its per-record bookkeeping (about 5% of the worker's CPU, for
    faust's own web stats, which nothing here reads); rebalances and commits are still kept."""

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        return None

    def on_stream_event_out(
        self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        return None

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        return None


async def _skip_marker_gaps(part: PartitionRuntime, partition: int, side: SideClients) -> None:
    """A deadline waits for catch-up on an input that has not moved since the last check:
    if the gap to its end offset holds no record (only transaction markers), it is read."""
    behind = part.watermark.behind()
    previous, part.last_positions = part.last_positions, dict(part.watermark.positions)
    for topic, (position, end) in behind.items():
        if previous.get(topic) != position:
            continue  # still moving: the agent is reading its way there
        if not await side.has_records(TopicPartition(topic, partition), position, end):
            part.watermark.skip_to(topic, end)


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
