"""The eager hand-off and the ebb wait of streams/faust_speedups.py (no broker)."""

from __future__ import annotations

import asyncio

import pytest
from faust.transport.producer import ProducerBuffer

from streams.patches.handoff import (
    _DONE,
    EBB_POLL_S,
    _ebb,
    _finish,
    _finish_or_suspend,
    _first_step,
    install,
)


async def test_a_hand_off_that_does_not_block_finishes_in_its_first_step() -> None:
    done: list[int] = []

    async def put() -> None:
        done.append(1)

    assert _first_step(put()) is _DONE
    assert done == [1]


async def test_a_blocked_hand_off_is_finished_with_its_result_or_error() -> None:
    gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def put() -> int:
        return await gate + 1

    coro = put()
    waiting_on = _first_step(coro)
    assert waiting_on is gate
    task = asyncio.ensure_future(_finish(coro, waiting_on))
    await asyncio.sleep(0)
    assert not task.done()
    gate.set_result(41)
    assert await task == 42

    failing: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def put_failing() -> int:
        return await failing

    coro = put_failing()
    task = asyncio.ensure_future(_finish(coro, _first_step(coro)))
    failing.set_exception(ValueError("broker"))
    with pytest.raises(ValueError, match="broker"):
        await task


async def test_a_suspended_flow_cancels_the_blocked_hand_off() -> None:
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    cleaned: list[str] = []

    async def put() -> None:
        try:
            await gate
        except asyncio.CancelledError:
            cleaned.append("cancelled")
            raise

    coro = put()
    guard: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    handoff = asyncio.ensure_future(_finish_or_suspend(_finish(coro, _first_step(coro)), guard))
    await asyncio.sleep(0)
    guard.set_result(None)  # rebalance: the flow is suspended
    await handoff
    await asyncio.sleep(0)
    assert cleaned == ["cancelled"]
    assert gate.cancelled()


class _CountingConf:
    def __init__(self, threaded: bool) -> None:
        self.threaded, self.reads = threaded, 0

    @property
    def producer_threaded(self) -> bool:
        self.reads += 1
        return self.threaded


class _App:
    def __init__(self, threaded: bool) -> None:
        self.conf = _CountingConf(threaded)


@pytest.mark.parametrize("threaded", [False, True])
async def test_producer_buffer_size_reads_the_setting_once(threaded: bool) -> None:
    install()
    buffer = ProducerBuffer()
    app = _App(threaded)
    buffer.app = app  # type: ignore[assignment]
    queue: asyncio.Queue[int] = asyncio.Queue()
    if threaded:
        assert buffer.size == 0  # no queue yet: faust answers 0 too
        buffer.queue = queue
    else:
        buffer.pending = queue
    assert buffer.size == 0
    queue.put_nowait(1)
    queue.put_nowait(2)
    assert buffer.size == 2
    assert app.conf.reads == 1


class _Channel:
    def __init__(self, queue: asyncio.Queue[int] | None) -> None:
        self._queue = queue


async def test_a_full_queue_is_left_to_ebb_to_half_before_more_hand_offs() -> None:
    full: asyncio.Queue[int] = asyncio.Queue(maxsize=4)
    for i in range(4):
        full.put_nowait(i)
    unbounded: asyncio.Queue[int] = asyncio.Queue()
    for i in range(10):
        unbounded.put_nowait(i)  # no bound: nothing to wait for
    channels = [_Channel(full), _Channel(None), _Channel(unbounded)]
    waiting = asyncio.ensure_future(_ebb(channels, lambda: False))
    await asyncio.sleep(3 * EBB_POLL_S)
    assert not waiting.done()
    full.get_nowait()  # three left: still over half
    await asyncio.sleep(3 * EBB_POLL_S)
    assert not waiting.done()
    full.get_nowait()  # two left: half
    await asyncio.wait_for(waiting, 1.0)


async def test_waiting_for_a_full_queue_ends_when_the_flow_is_suspended() -> None:
    full: asyncio.Queue[int] = asyncio.Queue(maxsize=2)
    full.put_nowait(1)
    full.put_nowait(2)
    paused = False
    waiting = asyncio.ensure_future(_ebb([_Channel(full)], lambda: paused))
    await asyncio.sleep(3 * EBB_POLL_S)
    assert not waiting.done()
    paused = True
    await asyncio.wait_for(waiting, 1.0)
    assert full.qsize() == 2
