"""Per-record costs of faust-streaming 0.15.3 cut, found by profiling the worker.

1. The hand-off from fetcher to stream: faust's `Consumer._drain_messages` hands every fetched
record to the stream's queue with `wait_first(callback(message), suspend_flow.wait())`, four
tasks and an `asyncio.wait` per record, so a rebalance can interrupt a hand-off blocked on a
full queue. In a profile of the worker that was a sixth of its CPU. Almost every hand-off
finishes at once (the queue has room), so here the callback runs eagerly: when its first step
completes it costs one coroutine step; only when it would block is it finished as a task,
raced (as before) against the flow being suspended or the consumer stopping, through one
long-lived guard task. Everything else is faust's loop as it is.

(Also tried: yielding to the event loop every 32 records instead of before each one, as
faust's stream loop does. No measurable gain in bench/stream.py; not kept.)

Once a hand-off has blocked, the stream's queue is full, and the next hand-off would block
again, and the next: a task and two waits per record while the agent is behind. So after a
blocked hand-off the fetcher waits for the agent to empty half of the queue (or for the flow
to be suspended, or the consumer to stop) before it hands off more. Measured with the worker
over 150,000 requests, five interleaved rounds: median 19,373 -> 21,421 records/s; a queue
too large ever to fill gave 21,428.

2. The producer buffer's size: every hand-off first waits until faust's producer buffer ebbs,
which reads `ProducerBuffer.size`, which reads `app.conf.producer_threaded` through faust's
settings descriptors: 3.4% of the worker's main thread in a py-spy profile, for a setting that
never changes once the app exists. Here the setting is read once per buffer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Final

from faust.transport import consumer as faust_consumer
from faust.transport import producer as faust_producer

#: The upstream methods this module replaces (fingerprinted in `upstream.py`).
REPLACES: Final = (
    "faust.transport.consumer:Consumer._drain_messages",
    "faust.transport.producer:ProducerBuffer.size",
)

_DONE = object()
#: How often a fetcher waiting for a full stream queue to ebb looks at it again.
EBB_POLL_S = 0.005


def _first_step(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run `coro` up to its first suspension; `_DONE` if it finished, else what it awaits."""
    try:
        return coro.send(None)
    except StopIteration:
        return _DONE


async def _finish(coro: Coroutine[Any, Any, Any], waiting_on: Any) -> Any:
    """Drive a coroutine that `_first_step` left suspended on `waiting_on` to its end."""
    try:
        while True:
            if isinstance(waiting_on, asyncio.Future):
                await asyncio.wait([waiting_on])  # the coroutine reads its result itself
            else:
                await asyncio.sleep(0)  # a bare yield
            try:
                waiting_on = coro.send(None)
            except StopIteration as stop:
                return stop.value
    except asyncio.CancelledError:
        if isinstance(waiting_on, asyncio.Future):
            waiting_on.cancel()
        try:
            coro.throw(asyncio.CancelledError())
        except (asyncio.CancelledError, StopIteration):
            pass
        else:
            coro.close()
        raise


async def _drain_messages(self: Any, fetcher: Any) -> None:  # pragma: no cover - faust's loop
    callback = self.callback
    getmany = self.getmany
    consumer_should_stop = self._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    suspended = self.suspend_flow.is_set

    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    flag_consumer_fetching = faust_consumer.CONSUMER_FETCHING
    set_flag = self.diag.set_flag
    unset_flag = self.diag.unset_flag
    commit_every = self._commit_every
    acks_enabled_for = self.app.topics.acks_enabled_for

    yield_every = 100
    num_since_yield = 0
    sleep = asyncio.sleep

    def should_pause() -> bool:
        return bool(suspended() or consumer_should_stop() or fetcher_should_stop())

    # One long-lived task that ends when the flow is suspended (or the consumer stops or
    # crashes), shared by every blocked hand-off instead of three new tasks per record.
    guard: asyncio.Future[Any] | None = None

    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(flag_consumer_fetching)
            ait = getmany(timeout=1.0)
            await self.sleep(0)
            if not self.should_stop:
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await sleep(0)
                        num_since_yield = 0

                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is None or offset >= r_offset:
                        gap = offset - (r_offset or 0)
                        if gap > 1 and r_offset and acks_enabled_for(message.topic):
                            await self._add_gap(tp, r_offset + 1, offset)
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        if suspended():
                            await self.wait_first(callback(message), self.suspend_flow.wait())
                        else:
                            coro = callback(message)
                            waiting_on = _first_step(coro)
                            if waiting_on is not _DONE:
                                if guard is None or guard.done():
                                    guard = asyncio.ensure_future(
                                        self.wait_first(self.suspend_flow.wait())
                                    )
                                await _finish_or_suspend(_finish(coro, waiting_on), guard)
                                # The stream's queue was full: let the agent take half of it
                                # before the next hand-off, or every hand-off blocks again.
                                await _ebb(self.app.topics, should_pause)
                        set_read_offset(tp, offset)
                unset_flag(flag_consumer_fetching)
    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(flag_consumer_fetching)
        if guard is not None and not guard.done():
            guard.cancel()


async def _ebb(conductor: Any, should_pause: Callable[[], bool]) -> None:
    """Wait until every bounded stream queue of the app is at most half full (or the flow is
    suspended, or the consumer stops)."""
    queues = [
        queue
        for queue in (getattr(channel, "_queue", None) for channel in conductor)
        if queue is not None and queue.maxsize
    ]
    # Polled: faust's queues signal nothing when they pass half (and an agent takes a few
    # hundred records per poll, so a poll costs nothing next to the wait).
    while not should_pause() and any(q.qsize() > q.maxsize // 2 for q in queues):  # noqa: ASYNC110
        await asyncio.sleep(EBB_POLL_S)


async def _finish_or_suspend(handoff: Coroutine[Any, Any, Any], guard: asyncio.Future[Any]) -> None:
    """Finish a blocked hand-off unless the guard ends first (then cancel it, as faust does)."""
    task = asyncio.ensure_future(handoff)
    try:
        await asyncio.wait((task, guard), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
    if task.done() and not task.cancelled():
        task.result()  # propagate the hand-off's exception


def _buffer_size(self: Any) -> int:
    """`ProducerBuffer.size`, with `producer_threaded` read from the app's settings once."""
    threaded = self.__dict__.get("_threaded_setting")
    if threaded is None:
        threaded = self.__dict__["_threaded_setting"] = bool(self.app.conf.producer_threaded)
    if threaded:
        queue = self.queue
        return len(queue._queue) if queue else 0
    return len(self.pending._queue)


def install() -> None:
    """Replace faust's drain loop and producer buffer size with these (idempotent)."""
    faust_consumer.Consumer._drain_messages = _drain_messages  # type: ignore[method-assign]
    faust_producer.ProducerBuffer.size = property(_buffer_size)  # type: ignore[assignment]
