"""The table manager finalizes its tables and starts recovery without faust's one-second
sleep (`streams.patches.table_start`); faust's own objects, no broker."""

from __future__ import annotations

from typing import Any

import faust
import pytest

from streams import patches


async def test_the_table_manager_starts_recovery_without_sleeping(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    patches.install()
    app = faust.App("t", store="memory://", broker="kafka://127.0.0.1:1")
    manager: Any = app.tables
    calls: list[str] = []

    async def sleep(seconds: float) -> None:
        calls.append(f"sleep {seconds}")

    async def update_channels() -> None:
        calls.append("tables finalized")

    async def start() -> None:
        calls.append("recovery started")

    monkeypatch.setattr(manager, "sleep", sleep)
    monkeypatch.setattr(manager, "_update_channels", update_channels)
    monkeypatch.setattr(manager.recovery, "start", start)
    await manager.on_start()
    assert calls == ["tables finalized", "recovery started"]
