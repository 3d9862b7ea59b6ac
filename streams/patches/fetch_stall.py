"""aiokafka's fetcher sends no fetch of idle partitions only while busy ones hold records.

aiokafka keeps one fetch in flight per broker, and leaves out of it every partition whose
fetched records the app has not taken yet. When the worker's agent is busy, every busy input
partition holds such records, so the next fetch asked only for the idle partitions
(order-events, ticks); the broker held that fetch until data came or `fetch_max_wait_ms`
passed (faust sets 1500), and the busy partitions, once taken, waited behind it. Measured in
bench/stream.py (b): the agent's queue ran dry with 18,000 records waiting at the broker, and
the worker stayed about 2 s behind at half its sustained rate.

Here such a fetch is not sent. A partition counts as idle when its last fetch brought no
records (a partition the app has just drained after a fetch that brought some does not). The
fetcher wakes again when the app takes buffered records, and then fetches the drained
partitions with the idle ones. Records left untaken for `HOLD_S` (a paused partition, a
stalled app) stop holding the idle partitions back, as before.

tests/integration/test_fetch_fix.py takes records 0.3 s after they arrive, as a busy agent
does: the longest a take then waited for records already at the broker was 1.01 s as
shipped, 0.0 s with the fix. (Shortening `fetch_max_wait_ms` to 100 ms instead bounds each
stall to 100 ms and sends an idle worker's fetches 15 times as often. In interleaved rounds of
bench/stream.py (a), neither fix moved the worker's throughput beyond the noise: one set of
rounds had the 100 ms wait 5% behind faust's 1.5 s, another had the three level.)
"""

from __future__ import annotations

import time
from typing import Any, Final

from aiokafka.consumer import fetcher as aiokafka_fetcher
from aiokafka.structs import TopicPartition

#: The upstream methods this module replaces (fingerprinted in `upstream.py`).
REPLACES: Final = (
    "aiokafka.consumer.fetcher:Fetcher._get_actions_per_node",
    "aiokafka.consumer.fetcher:Fetcher._proc_fetch_request",
)

#: How long untaken records of a busy partition may hold back a fetch of idle ones.
HOLD_S: Final = 1.0

_get_actions_per_node = aiokafka_fetcher.Fetcher._get_actions_per_node
_proc_fetch_request = aiokafka_fetcher.Fetcher._proc_fetch_request


def _asked(request: Any) -> list[TopicPartition]:
    return [
        TopicPartition(topic, p) for topic, partitions in request.topics for p, *_ in partitions
    ]


async def _proc_fetch_request_noting_idle(
    self: Any, assignment: Any, node_id: int, request: Any
) -> Any:
    result = await _proc_fetch_request(self, assignment, node_id, request)
    idle: set[TopicPartition] = self.__dict__.setdefault("_idle_tps", set())
    for tp in _asked(request):
        if tp in self._records:
            idle.discard(tp)  # it brought records
        else:
            idle.add(tp)
    return result


def _actions_without_idle_only_fetches(self: Any, assignment: Any) -> Any:
    actions = _get_actions_per_node(self, assignment)
    fetch_requests = actions[0]
    if not fetch_requests or not self._records:
        return actions
    now = time.monotonic()
    holding = {
        self._select_read_replica(tp)
        for tp, result in self._records.items()
        if now - result._created < HOLD_S
    }
    if not holding:
        return actions
    idle: set[TopicPartition] = self.__dict__.get("_idle_tps", set())
    kept = [
        (node_id, request)
        for node_id, request in fetch_requests
        if node_id not in holding or not idle.issuperset(_asked(request))
    ]
    return (kept, *actions[1:])


def install() -> None:
    """Install the fix (idempotent)."""
    fetcher = aiokafka_fetcher.Fetcher
    fetcher._proc_fetch_request = _proc_fetch_request_noting_idle
    fetcher._get_actions_per_node = _actions_without_idle_only_fetches
