"""Fixes to faust-streaming 0.15.3 that exactly-once deadlines depend on, applied at import.

Each fix names what goes wrong without it and the test that shows it.

1. Table recovery under exactly_once. faust asks for changelog high-waters with
   `last_stable_offset(tp)`, a value the consumer only knows for partitions it has already
   fetched; for a changelog partition a worker has just been given it answers "nothing", so
   the table restores nothing and the orders of that partition are forgotten. With the fix the
   consumer asks the broker (`end_offsets`, which under read_committed is the last stable
   offset, as the original meant). Shown by
   tests/integration/test_worker_failures.py::test_two_workers_split_partitions_and_survive_a_rebalance.

2. Fetch stalls under load. faust builds its consumer with `fetch_max_wait_ms=1500`. aiokafka
   keeps one fetch in flight per broker and leaves out of it every partition whose fetched
   records the app has not taken yet. When the agent is busy, all busy partitions hold such
   records, so the next fetch asks only for the idle ones (order-events, ticks); the broker
   holds that fetch until data comes or 1.5 s pass, and the busy partitions, once taken, wait
   for it. Measured in bench/stream.py (b): the agent's queue ran dry with 18,000 records
   waiting at the broker, and the worker stayed about 2 s behind at half its sustained rate.
   With the fix a fetch waits at most `FETCH_MAX_WAIT_MS`; an idle worker sends a few more
   small fetches. Shown by tests/unit/test_faust_fixes.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from faust.transport.drivers import aiokafka as faust_aiokafka

#: The longest the broker may hold a fetch that finds no new records (aiokafka's default is
#: 500, faust's 1500): the longest a drained busy partition can wait behind it.
FETCH_MAX_WAIT_MS: Final = 100

_create_worker_consumer = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer


async def _highwaters_from_broker(self: Any, partitions: list[Any]) -> Mapping[Any, int]:
    consumer = self._ensure_consumer()
    ends: Mapping[Any, int] = await consumer.end_offsets(partitions)
    return ends


def _worker_consumer_with_short_fetch_wait(self: Any, transport: Any) -> Any:
    consumer = _create_worker_consumer(self, transport)
    consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by its fetcher when it starts
    return consumer


def apply() -> None:
    """Install the fixes (idempotent)."""
    thread = faust_aiokafka.AIOKafkaConsumerThread
    thread._highwaters = _highwaters_from_broker  # type: ignore[method-assign]
    thread._create_worker_consumer = _worker_consumer_with_short_fetch_wait  # type: ignore[method-assign]
