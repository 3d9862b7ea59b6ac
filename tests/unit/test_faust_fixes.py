"""`streams.faust_fixes`: what the worker's faust consumer is built with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streams.faust_fixes import FETCH_MAX_WAIT_MS
from streams.settings import Settings
from streams.worker import build_app


async def test_the_worker_consumer_fetches_wait_briefly_for_idle_partitions(
    tmp_path: Path,
) -> None:
    # faust hard-codes 1500 ms: a fetch of idle partitions only held drained busy ones that long
    app = build_app(Settings.from_env({}, data_dir=tmp_path))
    app.in_worker = True  # as `aftersale worker` runs it: exactly-once is on
    thread: Any = app.consumer._thread  # type: ignore[attr-defined]
    consumer = thread._create_worker_consumer(app.transport)
    try:
        assert consumer._fetch_max_wait_ms == FETCH_MAX_WAIT_MS == 100
        # the other settings faust chose are untouched
        assert consumer._group_id == app.conf.id
        assert consumer._isolation_level == "read_committed"
    finally:
        await consumer.stop()
