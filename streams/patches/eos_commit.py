"""Exactly-once commits: each partition's outbox rides in the transaction of its offsets.

faust 0.15.3 sends table changelog records through a background buffer and commits the
offsets without waiting for it, so a changelog record can land in a later transaction than
the outputs and offsets of the record that caused it; a crash between the two loses the
state change while keeping the action, and the action fires again after the restart.

Here the worker writes nothing while it processes; at every commit, right after faust has
chosen the offsets to commit (nothing runs in between), this module takes the outbox of each
of those partitions, sends its changelog records and outputs with the partition's
transactional producer, and lets faust commit the offsets in that same transaction. Only
when that transaction has committed is the batch written to the local store; when it is
aborted or its producer stopped (the partition was revoked), the batch is dropped. faust's
methods are wrapped for that (`install`); an app opts in with `route_commits(app, hook)`; the
hook itself is `streams.live.commit_hook.CommitHook`.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any, Final, Protocol

from aiokafka.errors import (
    CorruptRecordException,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    UnsupportedForMessageFormatError,
)
from aiokafka.structs import TopicPartition as TP  # what faust hands over, and aiokafka checks
from faust.exceptions import ProducerSendError
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka

from streams.errors import shown

#: The upstream methods this module replaces (fingerprinted in `upstream.py`).
REPLACES: Final = (
    "faust.transport.consumer:Consumer._commit_tps",
    "faust.transport.drivers.aiokafka:Producer.commit_transactions",
    "faust.transport.drivers.aiokafka:Producer.abort_transaction",
    "faust.transport.drivers.aiokafka:Producer.stop_transaction",
)

log = logging.getLogger("aftersale.worker")

_HOOKS: weakref.WeakKeyDictionary[Any, CommitHookT] = weakref.WeakKeyDictionary()


#: Send errors tied to the records themselves (too large, invalid): sending the same records
#: again, now or after a restart, fails the same way. Every other send error is the broker's
#: or the network's (not the leader, a timeout, the broker down): aiokafka retries those until
#: its request timeout, then the worker stops and redoes the work from the last commit.
RECORD_ERRORS: Final = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
    CorruptRecordException,
    UnsupportedForMessageFormatError,
)


class RecordRefused(ProducerSendError):
    """A topic refused a batch for what its records are: not retriable, never skipped."""

    @classmethod
    def of(
        cls,
        topic: str,
        partition: int,
        records: Sequence[SendRecord],
        error: BaseException,
    ) -> RecordRefused:
        sizes = [(len(record[0] or b"") + len(record[1] or b""), record[0]) for record in records]
        size, key = max(sizes, key=lambda pair: pair[0]) if sizes else (0, None)
        return cls(
            f"{topic}[{partition}] refused a batch of {len(records)} record(s), the largest "
            f"{size} bytes with key {shown(key)}: {error!r}"
        )


class CommitHookT(Protocol):
    """What the wrapped commit path asks of an app's hook (`streams.live.commit_hook`)."""

    poisoned: BaseException | None

    def processed(self) -> Mapping[tuple[str, int], int]: ...

    def take(self, partitions: Iterable[int]) -> list[Any]: ...

    async def send(
        self, sender: RecordSender, tids: Mapping[int, str | None], taken: list[Any]
    ) -> None: ...

    def committed(self, tid: str | None) -> None: ...

    def aborted(self, tid: str | None) -> None: ...


#: One record to send: (key, value), stamped now; or (key, value, timestamp in ms, headers).
SendRecord = (
    tuple[bytes | None, bytes | None]
    | tuple[bytes | None, bytes | None, int | None, Sequence[tuple[str, bytes]]]
)
#: Sends records to one partition of a topic under a transactional id (None: no transaction)
#: and returns the offset of the last one.
RecordSender = Callable[[str | None, str, int, Sequence[SendRecord]], Coroutine[Any, Any, int]]


def route_commits(app: Any, hook: CommitHookT) -> None:
    """Route `app`'s commits through `hook` (the wrappers must be installed: `install()`)."""
    _HOOKS[app] = hook


def _tids(consumer: Any, offsets: Mapping[Any, int]) -> dict[int, str | None]:
    """The transactional id faust commits each partition's offsets with (None: no transactions)."""
    app = consumer.app
    tids: dict[int, str | None] = {}
    for tp in offsets:
        tid = None
        if consumer.in_transaction:
            tid = f"{app.conf.id}-{app.assignor.group_for_topic(tp.topic)}-{tp.partition}"
        if tids.setdefault(tp.partition, tid) != tid:
            raise RuntimeError(
                f"partition {tp.partition} is committed under two transactional ids; "
                "the inputs must be consumed by one agent"
            )
    return tids


#: A record stamped now, without headers (aiokafka's batch builder takes a list; never changed)
_PLAIN: Final[tuple[None, list[tuple[str, bytes]]]] = (None, [])


def _batch_sender(producer: Any) -> RecordSender:
    """Send with aiokafka record batches: one per topic-partition, not one call per record."""

    async def send(
        tid: str | None,
        topic: str,
        partition: int,
        records: Sequence[SendRecord],
    ) -> int:
        if tid is None:
            client = producer._ensure_producer()
        else:
            client = producer._transaction_producers.get(tid)
            if client is None:
                raise ProducerSendError(f"no transactional producer for {tid}")
        last = -1
        sent = []
        builder, first = client.create_batch(), 0
        refused = records  # the records of the batch being sent or awaited
        try:
            for n, record in enumerate(records):
                key, value = record[0], record[1]
                # (key, value, timestamp in ms, headers): a rerouted input keeps its own
                stamp, headers = (record[2], list(record[3])) if len(record) == 4 else _PLAIN
                if builder.append(key=key, value=value, timestamp=stamp, headers=headers) is None:
                    refused = records[first:n]
                    fut = await client.send_batch(builder, topic, partition=partition)
                    sent.append((fut, builder, refused))
                    builder, first = client.create_batch(), n
                    builder.append(key=key, value=value, timestamp=stamp, headers=headers)
            refused = records[first:]
            fut = await client.send_batch(builder, topic, partition=partition)
            sent.append((fut, builder, refused))
            for fut, full, chunk in sent:
                refused = chunk
                meta = await fut
                last = max(last, meta.offset + full.record_count() - 1)
        except RECORD_ERRORS as exc:
            raise RecordRefused.of(topic, partition, refused, exc) from exc
        return last

    return send


async def _commit_tps(self: Any, tps: Iterable[Any], start_new_transaction: bool) -> bool:
    # faust's Consumer._commit_tps, with the outbox taken and sent before the offsets commit.
    hook = _HOOKS.get(self.app)
    # (also faust's bookkeeping: it drops the acked offsets it has counted)
    commit_offsets = self._filter_committable_offsets(tps)
    if hook is not None:
        if hook.poisoned is not None:
            return False  # the worker is crashing: nothing half-done may commit
        # What the app has processed, on every partition it has: a record the agent saw long
        # ago may have been processed only now (faust would not offer its partition again).
        processed = (
            (TP(topic, partition), offset)
            for (topic, partition), offset in hook.processed().items()
        )
        commit_offsets = {tp: offset for tp, offset in processed if self._should_commit(tp, offset)}
    if not commit_offsets:
        return False
    tids = _tids(self, commit_offsets) if hook is not None else {}
    taken = hook.take(tids) if hook is not None else []  # no await since choosing the offsets
    try:
        if hook is not None:
            producer = self.transactions.producer if self.in_transaction else self.app.producer
            try:
                await hook.send(_batch_sender(producer), tids, taken)
            except Exception as exc:
                # The open transactions may hold part of a batch: they must never commit.
                hook.poisoned = exc
                if self.in_transaction:
                    for tid in {t for t in tids.values() if t is not None}:
                        await producer.abort_transaction(tid)
                if isinstance(exc, RecordRefused):
                    log.critical(
                        "%s. Not retriable: the same records would be refused again after a "
                        "restart. Nothing of this commit was written. Every output the contract "
                        "allows fits a topic that `aftersale topics check` passes, so this is a "
                        "topic whose max.message.bytes was lowered since, or the state of one "
                        "order grown past the changelog topic's (topics/README.md, send "
                        "failures)",
                        exc,
                    )
                raise ProducerSendError(f"outbox send failed: {exc!r}") from exc
        await self._handle_attached(commit_offsets)
    except ProducerSendError as exc:
        await self.crash(exc)
        return False
    did_commit: bool = await self._commit_offsets(
        commit_offsets, start_new_transaction=start_new_transaction
    )
    if hook is not None and not self.in_transaction and did_commit:
        hook.committed(None)
    return did_commit


async def _commit_transactions(
    self: Any,
    tid_to_offset_map: Mapping[str, Mapping[Any, int]],
    group_id: str,
    start_new_transaction: bool = True,
) -> None:
    # faust's aiokafka Producer.commit_transactions, telling the hook what has committed.
    hook = _HOOKS.get(self.app)
    for transactional_id, offsets in tid_to_offset_map.items():
        async with self._trn_locks[transactional_id]:
            producer = self._transaction_producers.get(transactional_id)
            if not producer:
                faust_aiokafka.logger.warning(
                    "Commit invoked for unknown transaction %s", transactional_id
                )
                if hook is not None:
                    hook.aborted(transactional_id)  # nothing sent under it can commit now
                continue
            await producer.send_offsets_to_transaction(offsets, group_id)
            await producer.commit_transaction()
            if hook is not None:
                hook.committed(transactional_id)
            if start_new_transaction:
                await producer.begin_transaction()


async def _abort_transaction(self: Any, transactional_id: str) -> None:
    hook = _HOOKS.get(self.app)
    if hook is not None:
        hook.aborted(transactional_id)
    await _faust_abort_transaction(self, transactional_id)


async def _stop_transaction(self: Any, transactional_id: str) -> None:
    hook = _HOOKS.get(self.app)
    if hook is not None:
        hook.aborted(transactional_id)
    await _faust_stop_transaction(self, transactional_id)


_faust_abort_transaction = faust_aiokafka.Producer.abort_transaction
_faust_stop_transaction = faust_aiokafka.Producer.stop_transaction
_installed = False


def install() -> None:
    """Wrap the faust methods (idempotent)."""
    global _installed
    if not _installed:
        faust_consumer.Consumer._commit_tps = _commit_tps  # type: ignore[method-assign]
        producer = faust_aiokafka.Producer
        producer.commit_transactions = _commit_transactions  # type: ignore[method-assign]
        producer.abort_transaction = _abort_transaction  # type: ignore[method-assign]
        producer.stop_transaction = _stop_transaction  # type: ignore[method-assign]
        _installed = True
