"""The consumer thread drains the partitions that were active when it was asked, no others.

faust asks its consumer thread for records with `Consumer._wait_next_records`, handing over
its live set of active partitions, which the event loop keeps changing while the thread waits
(up to a second) for records: recovery pauses and resumes partitions. aiokafka's
`Fetcher.fetched_records(partitions)` reads an empty set as "every partition" (`if partitions
and tp not in partitions`). So when recovery had just paused the last active partition, the
thread drained the records of every partition, paused ones included, and faust's
`Consumer.getmany` then dropped those of partitions not active (`tp in active_partitions`) with
the fetch position already past them. Recovery had already sought the partition to its
committed offset; nothing sought it again: its records were never read, and the partition
stood still at that offset while its log end moved on (tests/integration/test_faults.py, a
crashed member's partitions moved to the survivor, about one run in five on a loaded
machine: the survivor's fetch position at the log end, faust's read offset at none).

Here the thread gets a copy of the set as it was when asked (never empty: faust asks only
then). faust's own check of the records against the live set is unchanged.
"""

from __future__ import annotations

from typing import Any, Final

from faust.transport import consumer as faust_consumer

#: The upstream methods this module replaces (fingerprinted in `upstream.py`).
REPLACES: Final = ("faust.transport.consumer:Consumer._wait_next_records",)


async def _wait_next_records(self: Any, timeout: float) -> tuple[Any, Any]:  # noqa: ASYNC109  # pragma: no cover
    # faust's Consumer._wait_next_records, handing the thread a snapshot of the active set.
    if not self.flow_active:
        await self.wait(self.can_resume_flow)
    try:
        self.not_waiting_next_records.set()
        is_client_only = self.app.client_only
        active_partitions = None if is_client_only else self._get_active_partitions()
        records: Any = {}
        if is_client_only or active_partitions:
            asked = None if active_partitions is None else set(active_partitions)
            records = await self._getmany(active_partitions=asked, timeout=timeout)
        else:
            await self.sleep(1)
        return records, active_partitions
    finally:
        self.not_waiting_next_records.set()


def install() -> None:
    """Install the snapshot (idempotent)."""
    faust_consumer.Consumer._wait_next_records = _wait_next_records  # type: ignore[method-assign]
