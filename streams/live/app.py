"""`aftersale worker`: the faust app that drives the engine live, on the wall clock.

    order-events ─────┐
    aftersale-events ─┼─> one agent (per partition, in order) ─> handler ─> engine ─> outbox
    <app>-ticks ──────┘                                                             │
                        timer (ticker.py): due index + catch-up ─> tick records     │
    actions, reminders, dead letters, state changelog  <─ commit (one transaction) ─┘

* State: one OrderState per order in the `orders` table (RocksDB or memory), bytes via
  `state_codec`, co-partitioned with both inputs (same key, same partition count).
* Per record (`handler.py`): decode, check the key, apply, fire what is due and safe.
* Exactly once (`outbox.py`, `commit_hook.py`, `streams/patches/eos_commit.py`): processing
  a record does no I/O. State changes and output records wait in the partition's outbox; at
  each commit they go into the partition's transaction together with the input offsets, and
  reach the local store only once that transaction has committed.
* Deadlines: each partition has its own engine with a timer wheel holding the due times of a
  window ahead, read from the on-disk due index kept beside the state (`due_index.py`) when
  the partition is assigned; a revoked one is parked and reused if the partition comes back
  unchanged (`runtime.py`). A guarded timer (`ticker.py`) finds partitions with something
  due and writes a small tick record to that partition of the internal ticks topic; the agent
  fires on the tick, inside stream iteration, in input order. Ticks are at-least-once; a
  duplicate finds nothing due. Ticks go through a plain producer of their own: faust's
  transactional producer stalls when used outside stream iteration.
* Catch-up safety (`catchup.py`): a tick fires only deadlines up to the latest instant whose
  sampled end offsets of both input partitions have been processed. A record whose occurred_at
  is at or after a due deadline of its own case fires that deadline before it is applied.
"""

from __future__ import annotations

import logging
from types import MappingProxyType
from typing import Any, Final

import faust
from faust.sensors.monitor import Monitor
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from streams import patches
from streams.live.commit_hook import CommitHook
from streams.live.group_watermark import GroupWatermark
from streams.live.handler import RecordHandler
from streams.live.metrics import Liveness, RuntimeCollector, WorkerMetrics
from streams.live.outbox import Batch
from streams.live.policy_reload import PolicyFile
from streams.live.record_limits import PRODUCER_BATCH_BYTES, PRODUCER_REQUEST_BYTES
from streams.live.runtime import Runtime
from streams.live.settings import Settings
from streams.live.side_clients import SideClients
from streams.live.table_store import route_restores
from streams.live.ticker import check_deadlines
from streams.patches import eos_commit, static_leave
from streams.rules.clock import Clock, SystemClock
from streams.rules.policy import Policy, resolve_policy

log = logging.getLogger("aftersale.worker")

#: RocksDB memory per partition database of the `orders` table. faust's defaults (64 MB
#: write buffers, three of them, and a 2 GB block cache, per partition) kept a million orders'
#: state in memtables that never filled: memory grew with every open case. With these a
#: partition holds at most about 2 x 8 MB of memtable per column family and 32 MB of cached
#: blocks, whatever its number of orders; cold orders are read from the files (page cache).
ROCKSDB_OPTIONS: Final = MappingProxyType(
    {
        "write_buffer_size": 8 * 1024 * 1024,
        "max_write_buffer_number": 2,
        "block_cache_size": 32 * 1024 * 1024,
    }
)


#: faust settings for throughput, measured with bench/stream.py (a) and bench/faust_probe.py.
FAUST_TUNING: dict[str, Any] = {
    # a commit sends each partition's outbox as one record batch per topic (eos_commit); the
    # output topics must accept such batches (record_limits, checked at start)
    "producer_max_batch_size": PRODUCER_BATCH_BYTES,
    "producer_max_request_size": PRODUCER_REQUEST_BYTES,
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
    # A broker just restarted can answer metadata before it has loaded its topics: the group's
    # leader then assigns no partition at all (faust logs "Ignoring missing topic"), and the
    # group stays so until a metadata refresh shows the topics and triggers a rebalance. With
    # aiokafka's default refresh (5 min) the fault campaign saw 2 minutes without a partition
    # read or a deadline fired; a refresh every 5 s bounds that (one small request per 5 s).
    "consumer_metadata_max_age_ms": 5_000,
}


def worker_policy(settings: Settings) -> Policy:
    """The policy the worker runs: the preset AFTERSALE_POLICY names, else the file
    AFTERSALE_POLICY_FILE, else the contract's."""
    return resolve_policy(settings.policy or settings.policy_file)


def build_app(
    settings: Settings,
    clock: Clock | None = None,
    replication: int = 1,
    registry: CollectorRegistry | None = None,
) -> faust.App:
    """The faust app for these settings; `clock` defaults to the wall clock; `replication` is
    the replication factor of the state changelog topic when faust creates it; `registry`
    receives the metrics (default: a new one, served at /metrics)."""
    patches.install()
    static_leave.leave_on_close(settings.leave_on_shutdown)
    clock = clock or SystemClock()
    policy = worker_policy(settings)
    options = settings.client_options()
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{host.strip()}" for host in settings.kafka_bootstrap.split(",")],
        broker_credentials=faust_credentials(options),
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
        # Static membership: a worker restarted after a crash gets its partitions straight
        # back (no rebalance, no wait for its old session), and a dead one is noticed after the
        # session timeout (faust's default is 60 s). The canonical URL is faust's name for the
        # worker in its assignments (nothing here routes web requests by it): the same id, and
        # no port, so a restart finds it unchanged whatever port it listens on (a changed one
        # trips faust's assignor, and the worker then holds no partitions).
        consumer_group_instance_id=settings.member_id(),
        canonical_url=f"http://{settings.member_id()}",
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=min(1.0, settings.session_timeout / 6),
        web_port=settings.web_port,
        web_bind=settings.web_bind,
        monitor=LeanMonitor(),
        # faust reads unprefixed variables (WEB_PORT, PROCESSING_GUARANTEE, ...) over the values
        # given here: a Kubernetes service link `WEB_PORT=tcp://...` crashed the worker, and a
        # stray PROCESSING_GUARANTEE would turn exactly-once off. Settings come from AFTERSALE_*.
        env={},
    )
    topics = settings.topics()
    inputs = app.topic(*topics.merged, topics.ticks, schema=RawSchema())
    table = app.Table("orders", partitions=settings.partitions, options=dict(ROCKSDB_OPTIONS))
    # Tables take their serializers from key/value types ("json" for bytes) and build their
    # changelog topic with them at once: switch both to raw, so values are our bytes end to end
    # and changelog recovery reads back what was written.
    table.key_serializer = table.value_serializer = "raw"  # type: ignore[attr-defined]
    table.changelog_topic = table._new_changelog_topic()  # type: ignore[attr-defined]
    group = GroupWatermark() if settings.any_partitioner else None
    runtime = Runtime(settings, policy, table, topics.merged, group=group)
    route_restores(table, lambda: runtime.policy)
    handler = RecordHandler(runtime, topics, feed_status=settings.status_feed)
    registry = CollectorRegistry() if registry is None else registry
    metrics = WorkerMetrics(registry)
    liveness = Liveness(runtime)

    def committed(batch: Batch) -> None:
        runtime.committed(batch)
        metrics.committed(batch.tally)

    commit_hook = CommitHook(
        table.changelog_topic.get_topic_name(), runtime.outbox, runtime.positions, committed
    )

    def assigned() -> set[int]:
        return {
            tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topics.aftersales
        }

    def ready() -> bool:
        """Every assigned partition recovered and its due index built."""
        if app.rebalancing or not app.tables.actives_ready:
            return False
        return assigned() <= runtime.ready

    registry.register(RuntimeCollector(runtime, clock.now, ready, assigned))
    eos_commit.route_commits(app, commit_hook)
    side = SideClients(options, settings.app_id)

    @app.agent(inputs)
    async def process(stream: Any) -> None:
        # No await in the body: a commit (eos_commit) can only happen between two records.
        handle, now = handler.handle, clock.now
        async for event in stream.events():
            message = event.message
            try:
                handle(
                    message.topic,
                    message.partition,
                    message.offset,
                    message.key,
                    message.value,
                    now(),
                    message.timestamp,
                    message.headers,
                )
            except Exception as exc:
                # A bug, not bad input (that is a dead letter): whatever this record half did
                # must not commit. Stop committing, then stop the worker; its restart redoes
                # the record from the last commit.
                commit_hook.poisoned = exc
                log.exception(
                    "processing %s[%d]@%d failed", message.topic, message.partition, message.offset
                )
                await app.crash(exc)
                return

    @app.timer(settings.tick_interval)  # type: ignore[untyped-decorator]
    async def tick() -> None:
        # An exception escaping a timer crashes the worker: log it and try again next tick.
        try:
            await check_deadlines(app, runtime, clock, topics.ticks, side, handler.release)
        except Exception:
            log.exception("deadline check failed; retrying on the next tick")
        else:
            liveness.timer_ran()

    if settings.policy_file is not None:
        policy_file = PolicyFile(settings.policy_file, policy)
        reloads = Counter(
            "aftersale_policy_reloads",
            "Changes of the policy file seen by the worker, by outcome: taken, refused (it "
            "would move something already running: restart to take it) or invalid.",
            ["outcome"],
            registry=registry,
        )
        for outcome in policy_file.outcomes:
            reloads.labels(outcome)

        @app.timer(settings.policy_reload_interval)  # type: ignore[untyped-decorator]
        async def reload_policy() -> None:
            before = dict(policy_file.outcomes)
            new = policy_file.poll(clock.now())
            if new is not None:
                runtime.adopt(new)
            for outcome, count in policy_file.outcomes.items():
                reloads.labels(outcome).inc(count - before[outcome])

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        # (aiohttp wants the charset apart from the content type)
        content_type, _, charset = CONTENT_TYPE_LATEST.partition("; charset=")
        response = web.bytes(generate_latest(registry), content_type=content_type)
        response.charset = charset
        return response

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        problems = liveness.problems()
        return web.json(
            {"alive": not problems, "problems": problems}, status=503 if problems else 200
        )

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        ok = ready()
        waiting = sorted(assigned() - runtime.ready)
        body = {"ready": ok, "partitions": sorted(assigned()), "not_ready": waiting}
        return web.json(body, status=200 if ok else 503)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def revoke(app: faust.App, revoked: Any, **kwargs: Any) -> None:
        # faust re-reads a partition it keeps from its committed offsets, so what the outbox
        # holds beyond them would be done twice: start from the committed state instead.
        runtime.revoke({tp.partition for tp in revoked if tp.topic == topics.aftersales})

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def keep_assigned(app: faust.App, assigned: Any, **kwargs: Any) -> None:
        runtime.keep_only({tp.partition for tp in assigned if tp.topic == topics.aftersales})

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def stop_side_clients(app: faust.App, **kwargs: Any) -> None:
        await side.close()

    return app


def faust_credentials(options: dict[str, Any]) -> faust.types.auth.CredentialsT | None:
    """faust's credentials for the connection options of `Settings.client_options()` (the one
    place settings become SASL and SSL options)."""
    context = options.get("ssl_context")
    if "sasl_mechanism" in options:
        return faust.SASLCredentials(
            username=options["sasl_plain_username"],
            password=options["sasl_plain_password"],
            mechanism=options["sasl_mechanism"],
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


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
