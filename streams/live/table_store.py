"""The local, committed state of one partition of the faust `orders` table.

faust keeps the table's data in a store (RocksDB, one database per partition, or memory) and
restores it from the changelog. The worker writes to it only after a commit (`outbox.py`),
directly and in one batch together with the changelog offset the data is current up to, so
recovery resumes right after it. (faust's own exactly_once path never records that offset:
it files it under the changelog partition and looks it up under the source partition.)
A RocksDB partition also keeps its due index (`due_index.py`) in that batch, and faust's
restores go the same way (`route_restores`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import rocksdict

from streams.live.due_index import DueIndex
from streams.live.partitioning import partition_of
from streams.rules.policy import Policy


class RocksPartition:
    """One partition's RocksDB database of a faust rocksdb store, with its due index."""

    def __init__(self, store: Any, partition: int, policy: Policy) -> None:
        self.store, self.partition = store, partition
        self.db = store._db_for_partition(partition)
        self.offset_key: bytes = store.offset_key
        self.index = DueIndex(self.db, self.offset_key, policy)

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self.db.get(key)
        return value

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        offset_key = self.offset_key
        for key, value in self.db.items():
            if key != offset_key:
                yield key, value

    def write(self, items: Mapping[bytes, bytes | None], changelog_offset: int | None) -> None:
        batch = rocksdict.WriteBatch(raw_mode=True)
        self.index.update(batch, items, changelog_offset)  # reads the values it replaces
        for key, value in items.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        if changelog_offset is not None:
            batch.put(self.offset_key, str(changelog_offset).encode())
        self.db.write(batch)

    def changelog_offset(self) -> int | None:
        stored: bytes | None = self.db.get(self.offset_key)
        return None if stored is None else int(stored)


class MemoryPartition:
    """One partition's share of a faust memory store (one dict for all partitions)."""

    #: No due index on disk: the memory store is rebuilt from the changelog at every start.
    index: None = None

    def __init__(self, store: Any, partition: int, partitions: int) -> None:
        self.data: dict[bytes, bytes] = store.data
        self.partition, self.partitions = partition, partitions

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        partition, partitions = self.partition, self.partitions
        for key, value in list(self.data.items()):
            if partition_of(key.decode("utf-8"), partitions) == partition:
                yield key, value

    def write(self, items: Mapping[bytes, bytes | None], changelog_offset: int | None) -> None:
        # the memory store replays the whole changelog on every start: no offset to keep
        data = self.data
        for key, value in items.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value

    def changelog_offset(self) -> int | None:
        return None


def local_partition(
    table: Any, partition: int, partitions: int, policy: Policy
) -> RocksPartition | MemoryPartition:
    """The committed local state of `partition` of a faust table."""
    store = table.data
    if hasattr(store, "_db_for_partition"):
        return RocksPartition(store, partition, policy)
    return MemoryPartition(store, partition, partitions)


def route_restores(table: Any, policy: Callable[[], Policy]) -> None:
    """Have faust write the changelog records it restores into a RocksDB store the way the
    worker writes (`patches/changelog_write.py`), keeping the due index current."""
    from streams.patches.changelog_write import WRITER  # faust: the worker's, not a record's

    store = table.data
    if not hasattr(store, "_db_for_partition"):
        return

    def write(partition: int, items: Mapping[bytes, bytes | None], offset: int) -> None:
        RocksPartition(store, partition, policy()).write(items, offset)

    setattr(store, WRITER, write)
