"""The commit hook: batches are sent under their partition's transaction, settled on commit."""

from __future__ import annotations

from collections.abc import Sequence

from streams.live.commit_hook import CommitHook
from streams.live.outbox import Outbox
from streams.patches.eos_commit import SendRecord
from streams.rules.orders import OrderState
from streams.rules.state_codec import encode
from tests.unit.factories import DictLocalStore

STATE = encode(OrderState("o-1"))


class _Sender:
    """Records what is sent; offsets count per topic from 100."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, int, str | None]] = []
        self.offsets: dict[str, int] = {}

    async def __call__(
        self,
        tid: str | None,
        topic: str,
        partition: int,
        records: Sequence[SendRecord],
    ) -> int:
        for record in records:
            self.sent.append((topic, record[0], record[1], partition, tid))
        self.offsets[topic] = self.offsets.get(topic, 99) + len(records)
        return self.offsets[topic]


def _no_positions() -> dict[int, dict[str, int]]:
    return {}


def _outboxes() -> tuple[dict[int, Outbox], dict[int, DictLocalStore]]:
    locals_ = {p: DictLocalStore() for p in range(3)}
    return {p: Outbox(p, local) for p, local in locals_.items()}, locals_


async def test_a_batch_settles_only_when_its_transaction_commits() -> None:
    outboxes, locals_ = _outboxes()
    hook = CommitHook("app-orders-changelog", outboxes.get, _no_positions)
    sender = _Sender()
    outboxes[1]["o-1"] = OrderState("o-1")
    outboxes[1].emit("actions", b"o-1", b"a1")
    outboxes[2].emit("deadletter", None, b"d2")
    taken = hook.take([1, 2, 0])
    assert [batch.partition for _, batch in taken] == [1, 2]  # partition 0 had nothing
    await hook.send(sender, {0: "t0", 1: "t1", 2: "t2"}, taken)
    assert sender.sent == [
        ("app-orders-changelog", b"o-1", STATE, 1, "t1"),
        ("actions", b"o-1", b"a1", 1, "t1"),
        ("deadletter", None, b"d2", 2, "t2"),
    ]
    hook.committed("t2")
    assert locals_[1].data == {}  # t1 has not committed
    hook.committed("t1")
    assert locals_[1].data == {b"o-1": STATE}
    assert locals_[1].offsets == [100]  # the changelog offset of its last record


async def test_what_an_aborted_transaction_carried_never_settles() -> None:
    outboxes, locals_ = _outboxes()
    hook = CommitHook("cl", outboxes.get, _no_positions)
    sender = _Sender()
    outboxes[0]["o-1"] = OrderState("o-1")
    await hook.send(sender, {0: "t0"}, hook.take([0]))
    assert outboxes[0].get("o-1") is not None  # being committed
    hook.aborted("t0")  # its partition was revoked: faust stops the producer
    assert outboxes[0].get("o-1") is None  # the abandoned state is gone from memory too
    await hook.send(sender, {0: "t0"}, hook.take([0]))  # the next commit carries nothing new
    hook.committed("t0")
    assert locals_[0].data == {}


async def test_a_batch_whose_offsets_were_not_committed_settles_with_the_next_commit() -> None:
    """faust can skip a partition's offsets in one commit; its transaction stays open."""
    outboxes, locals_ = _outboxes()
    hook = CommitHook("cl", outboxes.get, _no_positions)
    sender = _Sender()
    outboxes[0]["o-1"] = OrderState("o-1")
    await hook.send(sender, {0: "t0"}, hook.take([0]))
    outboxes[0]["o-2"] = OrderState("o-2")
    await hook.send(sender, {0: "t0"}, hook.take([0]))
    hook.committed("t0")
    assert sorted(locals_[0].data) == [b"o-1", b"o-2"]
    assert locals_[0].offsets == [100, 101]


async def test_the_offsets_committed_are_what_the_agent_processed() -> None:
    """faust can ack a record its agent never processed (a hand-off landing after a revoke's
    clear, or a record held for its turn in append order), and never offers a partition again
    once it has counted its acks: what commits is each partition's processed positions."""
    outboxes, _ = _outboxes()
    positions = {0: {"in": 42, "ticks": 3}, 1: {"in": 8}}  # next offset to process
    hook = CommitHook("cl", outboxes.get, lambda: positions)
    assert hook.processed() == {("in", 0): 42, ("ticks", 0): 3, ("in", 1): 8}
    positions[1]["in"] = 9  # a held record judged later
    assert hook.processed()[("in", 1)] == 9
