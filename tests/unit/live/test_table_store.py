"""The committed local state of one table partition (RocksDB and memory)."""

from __future__ import annotations

from pathlib import Path

from streams.live.partitioning import partition_of
from streams.live.table_store import MemoryPartition, RocksPartition, local_partition
from streams.rules.policy import Policy
from tests.unit.factories import FaustRocksStore, FaustTable


def test_rocks_partition_writes_items_and_the_changelog_offset_together(tmp_path: Path) -> None:
    store = FaustRocksStore(tmp_path)
    local = local_partition(FaustTable(store), 3, 12, Policy())
    assert isinstance(local, RocksPartition)
    assert local.get(b"o-1") is None
    local.write({b"o-1": b"one", b"o-2": b"two"}, changelog_offset=41)
    local.write({b"o-1": b"uno"}, changelog_offset=None)
    assert local.get(b"o-1") == b"uno"
    assert sorted(local.items()) == [(b"o-1", b"uno"), (b"o-2", b"two")]  # no offset key
    assert store.persisted_offset(3) == 41
    assert local.changelog_offset() == 41
    assert store.persisted_offset(4) is None  # other partitions have their own database
    store.close()


def test_rocks_partition_deletes_a_key_written_as_none(tmp_path: Path) -> None:
    store = FaustRocksStore(tmp_path)
    local = local_partition(FaustTable(store), 0, 12, Policy())
    local.write({b"o-1": b"one", b"o-2": b"two"}, changelog_offset=5)
    local.write({b"o-1": None, b"o-3": b"three", b"o-9": None}, changelog_offset=8)
    assert local.get(b"o-1") is None
    assert sorted(local.items()) == [(b"o-2", b"two"), (b"o-3", b"three")]
    assert local.changelog_offset() == 8
    store.close()


def test_memory_partition_deletes_a_key_written_as_none() -> None:
    data: dict[bytes, bytes] = {b"o-1": b"one", b"o-2": b"two"}
    local = local_partition(FaustTable(type("S", (), {"data": data})()), 0, 1, Policy())
    local.write({b"o-1": None, b"o-9": None, b"o-2": b"dos"}, changelog_offset=3)
    assert data == {b"o-2": b"dos"}


def test_memory_partition_sees_only_its_own_keys() -> None:
    data: dict[bytes, bytes] = {}
    keys = [f"o-{i}" for i in range(40)]
    mine = [k for k in keys if partition_of(k, 4) == 1]
    local = local_partition(FaustTable(type("S", (), {"data": data})()), 1, 4, Policy())
    assert isinstance(local, MemoryPartition)
    local.write({k.encode(): b"x" for k in keys}, changelog_offset=7)
    assert sorted(k.decode() for k, _ in local.items()) == sorted(mine)
    assert local.get(b"o-0") == b"x"
    assert len(data) == 40
    assert local.changelog_offset() is None  # the memory store keeps no offset
