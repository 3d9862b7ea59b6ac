"""The deadline timer's work: which partitions have something due and safe, and a tick for each.

Every `AFTERSALE_TICK_INTERVAL` the worker samples the end offsets of each owned input
partition pair (catch-up safety, `catchup.py`), and writes a small tick record to a partition
of the internal ticks topic where a deadline is due on the wall clock and every record written
before it has been read. The agent fires on the tick, inside stream iteration, in input order.
Ticks are at-least-once: a duplicate finds nothing due.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiokafka.structs import TopicPartition

from streams.live.runtime import PartitionRuntime, Runtime
from streams.live.side_clients import SideClients
from streams.rules.clock import Clock

#: Re-send a tick for a partition when the last one has not been handled after this long.
TICK_RESEND_S = 1.0

log = logging.getLogger(__name__)


async def check_deadlines(
    app: Any,
    runtime: Runtime,
    clock: Clock,
    ticks_name: str,
    side: SideClients,
    release: Callable[[int, datetime], None],
) -> None:
    """One timer run: sample end offsets, judge the held input records they allow
    (`release`), then tick each partition with a due, safe deadline.

    `app` is the faust app (read for `rebalancing`, `tables.actives_ready` and the assignor).
    """
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
    new = runtime.reassign(active, clock.now())
    for tp, offset in starts.items():
        if tp.partition in new:
            runtime.parts[tp.partition].watermark.start_at(tp.topic, offset)
    every = _every_input(runtime) if runtime.group is not None else []
    if runtime.group is not None:
        # The group's committed offsets, asked before this run's end offsets: the samples of
        # the reroute input taken below come after them (`group_watermark.py`). Partitions
        # judged here count as far as they are judged, unless reroutes wait for a commit;
        # the broker is asked only for the others.
        here = judged_here(runtime)
        elsewhere = [tp for tp in every if (tp.topic, tp.partition) not in here]
        committed = await side.start_offsets(elsewhere) if elsewhere else {}
        if runtime.generation != generation or app.rebalancing:
            return
        offsets = {(tp.topic, tp.partition): offset for tp, offset in committed.items()}
        offsets.update(judged_here(runtime))  # read now: a moment after the answer
        runtime.group.committed(clock.now(), offsets)
    sampled_at = clock.now()  # before the request: the answer covers everything before it
    own = set(tps)
    ends = await side.end_offsets([*tps, *(tp for tp in every if tp not in own)])
    if runtime.generation != generation or app.rebalancing:
        return
    if runtime.group is not None:
        runtime.group.sample(sampled_at, {(tp.topic, tp.partition): ends[tp] for tp in every})
    now = clock.now()
    for partition in active:
        part = runtime.parts.get(partition)
        if part is None or runtime.generation != generation:
            return
        part.watermark.sample(
            sampled_at, {t: ends[TopicPartition(t, partition)] for t in runtime.inputs}
        )
        runtime.widen(partition, now)
        release(partition, now)
        wake, safe = part.engine.next_wakeup(), runtime.safe_until(part)
        idle_behind = runtime.group is not None and bool(part.watermark.behind())
        if (
            part.merge
            or idle_behind  # the group waits for this partition's committed offsets too
            or (wake is not None and wake <= now and (safe is None or safe < wake))
        ):
            # held records or a due deadline wait for an input that may have stopped short
            await _skip_marker_gaps(part, partition, side)
            if runtime.generation != generation:
                return
            release(partition, now)
            safe = runtime.safe_until(part)
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


def judged_here(runtime: Runtime) -> dict[tuple[str, int], int]:
    """Of the input partitions this worker judges, how far each is judged, for the group's
    catch-up (`group_watermark.py`): a record before that position was judged here, or
    rerouted in a transaction that has committed. A partition with reroutes not yet committed
    is left out (its committed offset counts, asked of the broker), as is one not yet ready
    (its start offset unknown)."""
    judged: dict[tuple[str, int], int] = {}
    for partition in runtime.ready:
        part = runtime.parts.get(partition)
        if part is None or part.outbox.sends_elsewhere:
            continue
        positions = part.watermark.positions
        for topic in runtime.inputs[:2]:
            position = positions.get(topic)
            if position is not None:
                judged[(topic, partition)] = position
    return judged


def _every_input(runtime: Runtime) -> list[TopicPartition]:
    """Every partition of the two input topics (not only this worker's)."""
    partitions = range(runtime.settings.partitions)
    return [TopicPartition(topic, p) for topic in runtime.inputs[:2] for p in partitions]


async def _skip_marker_gaps(part: PartitionRuntime, partition: int, side: SideClients) -> None:
    """Held records or a deadline wait for catch-up on an input that has not moved since the
    last check: if the gap to its end offset holds no record (only transaction markers), it is
    read."""
    behind = part.watermark.behind()
    previous, part.last_positions = part.last_positions, dict(part.watermark.positions)
    for topic, (position, end) in behind.items():
        if previous.get(topic) != position or part.merge.holds(topic):
            continue  # still moving, or records of it are held: not a gap of markers
        if not await side.has_records(TopicPartition(topic, partition), position, end):
            log.info(
                "%s[%d] %d-%d holds no record (transaction markers): read",
                topic,
                partition,
                position,
                end - 1,
            )
            part.watermark.skip_to(topic, end)
