"""The table manager starts its tables at once.

faust's `TableManager.on_start` sleeps a second before it finalizes the tables and starts
recovery, so that tables an app defines after starting still make it in; every start of the
worker waited that second before it joined its group (one of the ten seconds a restart after
kill -9 may take with a million open cases, `bench/stream.py` (c)). The worker defines its one
table before it starts (`streams/live/app.py`), so here the manager goes on at once; a table
added later is refused by faust as before ("Too late to add tables at this point").
"""

from __future__ import annotations

from typing import Any, Final

from faust.tables.manager import TableManager

#: The upstream methods this module replaces (fingerprinted in `upstream.py`).
REPLACES: Final = ("faust.tables.manager:TableManager.on_start",)


async def _on_start(self: Any) -> None:
    # faust's TableManager.on_start without its `await self.sleep(1.0)`
    if not self.should_stop:
        await self._update_channels()
        await self.recovery.start()


def install() -> None:
    """Install the prompt start (idempotent)."""
    TableManager.on_start = _on_start  # type: ignore[method-assign]
