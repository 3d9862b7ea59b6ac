"""Changelog records restored into a RocksDB store go through the worker's own write path.

faust's `Store.apply_changelog_batch` writes restored records to each partition database and
then, in a second write, the changelog offset they reach. The worker keeps a due index beside
the state (`streams/live/due_index.py`) that every write to the state must keep current, in
the same write batch. Here a store given a writer (`WRITER`, set by the worker for its
`orders` table) hands it each partition's restored records, newest value per key, with the
highest offset among them; the writer writes them, the offset and the index in one batch.
A store without one behaves as upstream.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from faust.stores import rocksdb as faust_rocksdb

#: The upstream methods this module replaces (fingerprinted in `upstream.py`).
REPLACES: Final = ("faust.stores.rocksdb:Store.apply_changelog_batch",)
#: The store attribute holding the writer: (partition, {key: value or None}, offset) -> None.
WRITER: Final = "_aftersale_writer"

Writer = Callable[[int, Mapping[bytes, bytes | None], int], None]

_upstream: Any = faust_rocksdb.Store.apply_changelog_batch


def _apply_changelog_batch(
    self: Any,
    batch: Iterable[Any],
    to_key: Callable[[Any], Any],
    to_value: Callable[[Any], Any],
) -> None:
    writer: Writer | None = getattr(self, WRITER, None)
    if writer is None:
        _upstream(self, batch, to_key, to_value)
        return
    items: dict[int, dict[bytes, bytes | None]] = {}
    offsets: dict[int, int] = {}
    for event in batch:
        message = event.message
        partition = message.partition
        items.setdefault(partition, {})[message.key] = message.value
        if message.offset > offsets.get(partition, -1):
            offsets[partition] = message.offset
    for partition, values in items.items():
        writer(partition, values, offsets[partition])


def install() -> None:
    """Install the routed restore (idempotent)."""
    faust_rocksdb.Store.apply_changelog_batch = _apply_changelog_batch  # type: ignore[method-assign]
