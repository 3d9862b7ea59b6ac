"""What a worker has decided on one partition but not yet committed (pure: no I/O).

The worker never writes state or output records while it processes a record. It keeps them
here, and at each offset commit the whole batch (changelog records and outputs) goes into the
partition's Kafka transaction together with the input offsets it follows from:

    agent:  store[order_id] = state; outbox.emit(topic, key, value)      (no await)
    commit: batch = outbox.take()      -> sent in the partition's transaction
            commit_transaction()       -> outbox.settle(batch): write to the local store

So the local store only ever holds committed state, stamped with the changelog offset it is
up to date with: after a crash nothing uncommitted survives anywhere, and recovery replays
the changelog from that offset. Reads see the newest decision: written, then being
committed, then the local store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Protocol, TypeVar, overload

from streams.live.tally import Tally
from streams.rules.orders import OrderState
from streams.rules.state_codec import decode_state, encode

if TYPE_CHECKING:
    from streams.live.due_index import DueIndex


class LocalStore(Protocol):
    """The committed state of one partition, on this worker's disk or in its memory."""

    def get(self, key: bytes) -> bytes | None: ...

    def items(self) -> Iterator[tuple[bytes, bytes]]: ...

    def write(self, items: Mapping[bytes, bytes | None], changelog_offset: int | None) -> None:
        """Write `items` (None: delete the key) and the changelog offset they are current up
        to, atomically."""

    def changelog_offset(self) -> int | None:
        """The changelog offset the store is current up to (None: not kept)."""

    @property
    def index(self) -> DueIndex | None:
        """The due index kept with the state (None: none kept)."""


class Output(NamedTuple):
    """One record for an output topic: to the batch's own partition unless `partition` says
    otherwise (a rerouted input), stamped now unless `timestamp_ms` says otherwise."""

    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None
    timestamp_ms: int | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


#: What `Outbox` holds for an order deleted since the last commit (compared by identity).
DELETED: Final = OrderState("")

T = TypeVar("T")


@dataclass(slots=True)
class Batch:
    """Everything decided on one partition between two commits."""

    partition: int
    #: key -> encoded state, or None for a deleted order (a tombstone in the changelog)
    states: dict[bytes, bytes | None]
    outputs: list[Output]
    #: What the batch counts for the metrics, once it has committed.
    tally: Tally = field(default_factory=Tally)
    #: Offset of the last changelog record of this batch, set once it was sent.
    changelog_offset: int | None = None

    def __bool__(self) -> bool:
        return bool(self.states or self.outputs or self.tally)


@dataclass(slots=True)
class Outbox(MutableMapping[str, OrderState]):
    """order_id -> OrderState for one partition, with writes and outputs held until commit."""

    partition: int
    local: LocalStore
    #: States written since the last `take`, and those taken but not yet settled; `DELETED`
    #: stands for an order deleted.
    _written: dict[str, OrderState] = field(default_factory=dict)
    _committing: dict[str, OrderState] = field(default_factory=dict)
    _outputs: list[Output] = field(default_factory=list)
    #: What the work since the last take counts for the metrics (`tally.py`).
    tally: Tally = field(default_factory=Tally)
    #: Orders of aborted batches: the engine's due index may still hold their aborted state.
    _aborted: set[str] = field(default_factory=set)
    _in_flight: int = 0
    #: Records for other partitions (`emit_to`: reroutes) not yet in a committed transaction.
    _elsewhere: int = 0
    #: Whether such a record was in an aborted one (lost until the partition is read again).
    _lost_elsewhere: bool = False

    # MutableMapping over states -------------------------------------------------------
    def __getitem__(self, order_id: str) -> OrderState:
        state = self.get(order_id)
        if state is None:
            raise KeyError(order_id)
        return state

    def get(self, order_id: str, default: OrderState | None = None) -> OrderState | None:  # type: ignore[override]
        state = self._written.get(order_id)
        if state is None:
            state = self._committing.get(order_id)
        if state is None:
            data = self.local.get(order_id.encode("utf-8"))
            if data is None:
                return default
            state = decode_state(data)
        elif state is DELETED:
            return default
        return state

    def __setitem__(self, order_id: str, state: OrderState) -> None:
        self._written[order_id] = state

    def __delitem__(self, order_id: str) -> None:
        """Delete the order's state: a tombstone on the changelog at the next commit."""
        if self.get(order_id) is None:
            raise KeyError(order_id)
        self._written[order_id] = DELETED

    def __iter__(self) -> Iterator[str]:
        newest = {**self._committing, **self._written}
        yield from (order_id for order_id, state in newest.items() if state is not DELETED)
        seen = newest.keys()
        for key, _ in self.local.items():
            order_id = key.decode("utf-8")
            if order_id not in seen:
                yield order_id

    def __len__(self) -> int:
        return sum(1 for _ in self)

    @overload
    def states(self) -> Iterator[tuple[str, OrderState]]: ...
    @overload
    def states(self, decode: Callable[[bytes], T]) -> Iterator[tuple[str, OrderState | T]]: ...
    def states(self, decode: Callable[[bytes], Any] = decode_state) -> Iterator[tuple[str, Any]]:
        """Every order of the partition with its newest state, in one pass over the store; the
        stored ones read by `decode` (the due index reads them with `decode_due`)."""
        newest = {**self._committing, **self._written}
        yield from ((order_id, s) for order_id, s in newest.items() if s is not DELETED)
        for key, data in self.local.items():
            order_id = key.decode("utf-8")
            if order_id not in newest:
                yield order_id, decode(data)

    # outputs and commits ----------------------------------------------------------------
    def emit(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Queue an output record for this partition's next commit."""
        self._outputs.append(Output(topic, key, value))

    def emit_to(self, output: Output) -> None:
        """Queue a record for another partition (`output.partition`), with its own timestamp
        and headers, in this partition's next commit."""
        self._outputs.append(output)
        if output.partition is not None:
            self._elsewhere += 1

    @property
    def sends_elsewhere(self) -> bool:
        """Whether records for other partitions wait for a commit (pending or being
        committed), or were lost in an aborted one: a read_committed reader of their
        partitions cannot see them (yet, or before this partition is read again)."""
        return self._elsewhere > 0 or self._lost_elsewhere

    def unsettled(self) -> set[str]:
        """Orders whose newest state, as the engine last saw it, is not in the local store."""
        return set(self._written) | set(self._committing) | self._aborted

    @property
    def pending(self) -> bool:
        """Whether anything waits to be taken."""
        return bool(self._written or self._outputs or self.tally)

    def take(self, encoder: Callable[[OrderState], bytes] = encode) -> Batch:
        """Everything written and emitted since the last take, encoded now."""
        states = {
            key.encode("utf-8"): None if state is DELETED else encoder(state)
            for key, state in self._written.items()
        }
        batch = Batch(self.partition, states, self._outputs, self.tally)
        self._committing.update(self._written)
        self._written, self._outputs, self.tally = {}, [], Tally()
        self._in_flight += 1
        return batch

    def settle(self, batch: Batch) -> None:
        """The batch's transaction committed: make it the local store's state."""
        if batch.states:
            self.local.write(batch.states, batch.changelog_offset)
        self._done(batch)

    def abandon(self, batch: Batch) -> None:
        """The batch's transaction was aborted: it never reaches the local store.

        (The worker drops a revoked partition's outbox anyway; this keeps a live one honest.)
        """
        for key in batch.states:
            order_id = key.decode("utf-8")
            self._committing.pop(order_id, None)
            self._aborted.add(order_id)
        self._done(batch, committed=False)

    def _done(self, batch: Batch, committed: bool = True) -> None:
        elsewhere = sum(1 for out in batch.outputs if out.partition is not None)
        self._elsewhere -= elsewhere
        if elsewhere and not committed:
            self._lost_elsewhere = True
        self._in_flight -= 1
        if self._in_flight == 0:
            # Nothing else is being committed: every state taken is in the local store.
            self._committing.clear()
