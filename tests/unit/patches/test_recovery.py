"""Recovery's aborted-transaction check sees a position only while a recovery of the current
generation reads (fix 4 of `streams.patches.recovery`); faust's own objects, no broker."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.types import TP

from streams import patches
from streams.patches import recovery as fix

LOG = TP("t-orders-changelog", 0)


class FetchedTo:
    """The consumer thread as the position asks it: every partition fetched to `offset`."""

    def __init__(self, offset: int) -> None:
        self.offset = offset

    async def position(self, tp: TP) -> int:
        return self.offset


class SeekWait:
    """The consumer as recovery's seek uses it."""

    def __init__(self) -> None:
        self.sought: list[dict[TP, int]] = []

    async def seek_wait(self, offsets: dict[TP, int]) -> None:
        self.sought.append(dict(offsets))


@pytest.fixture
async def app() -> Any:
    patches.install()
    return faust.App(
        "t", store="memory://", processing_guarantee="exactly_once", broker="kafka://127.0.0.1:1"
    )


async def position(app: Any) -> int | None:
    """What recovery's check is told (the consumer, without its thread and event loop, as
    `ThreadDelegateConsumer.position` sees it): fetched past the high-water (1154)."""
    consumer = SimpleNamespace(app=app, _thread=FetchedTo(1155))
    return await fix._position(consumer, LOG)


async def rebalance(app: Any) -> None:
    app.consumer_generation_id += 1
    await app.tables.recovery.on_rebalance(
        set(), set(), set(), generation_id=app.consumer_generation_id
    )


async def start_reading(app: Any) -> SeekWait:
    """What faust's `_restart_recovery` does before it reads: take the signal, seek."""
    recovery = app.tables.recovery
    recovery.signal_recovery_start.clear()
    consumer = SeekWait()
    await recovery._seek_offsets(consumer, {LOG}, Counter({LOG: 1106}), "active")
    return consumer


async def test_the_position_is_withheld_from_a_rebalance_until_the_new_recovery_has_sought(
    app: Any,
) -> None:
    # The campaign's case: a rebalance lands while the recovery loop waits idle; its check
    # runs before the new recovery has built high-waters and sought, with a position of no
    # recovery. faust would move the new start offset (1106) up to the old high-water (1154).
    await rebalance(app)
    assert await position(app) == fix.NOT_THERE
    consumer = await start_reading(app)
    assert consumer.sought == [{LOG: 1106}]  # faust's seek, made
    assert await position(app) == 1155


async def test_a_pending_recovery_withholds_the_position_even_after_a_seek(app: Any) -> None:
    await rebalance(app)
    await start_reading(app)
    app.tables.recovery.signal_recovery_start.set()  # a new rebalance, not yet started
    assert await position(app) == fix.NOT_THERE


async def test_a_seek_for_an_older_generation_does_not_count(app: Any) -> None:
    await rebalance(app)
    await start_reading(app)
    app.consumer_generation_id += 1  # joined again; its on_rebalance not yet run
    assert await position(app) == fix.NOT_THERE


async def test_a_standby_seek_does_not_start_the_reading(app: Any) -> None:
    await rebalance(app)
    recovery = app.tables.recovery
    recovery.signal_recovery_start.clear()
    await recovery._seek_offsets(SeekWait(), {LOG}, Counter({LOG: 3}), "standby")
    assert await position(app) == fix.NOT_THERE


def test_the_patch_is_what_faust_calls() -> None:
    patches.install()
    from faust.transport.consumer import ThreadDelegateConsumer

    assert ThreadDelegateConsumer.position is fix._position
    assert fix.NOT_THERE < 0  # short of every high-water faust compares it with
