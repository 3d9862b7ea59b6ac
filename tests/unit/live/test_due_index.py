"""The due index on disk: one entry per order at its committed due time, kept in the write
batch of the state, current only with the store's offset and the policy, and rebuilt else."""

from __future__ import annotations

import gc
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from faust.stores import rocksdb as faust_rocksdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.contract.events import decode
from streams.errors import InputError
from streams.live.due_index import DueIndex, entry_key, parse_entry
from streams.live.outbox import Outbox
from streams.live.table_store import RocksPartition, local_partition, route_restores
from streams.patches import changelog_write
from streams.rules.engine import Engine
from streams.rules.policy import Policy
from streams.rules.state_codec import decode_state, encode
from tests.unit.factories import T0, FaustRocksStore, FaustTable, event
from tests.unit.strategies import Scenario, scenarios

POLICY = Policy()
FAR = T0 + timedelta(days=3650)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FaustRocksStore]:
    rocks = FaustRocksStore(tmp_path)
    yield rocks
    rocks.close()


def rocks(store: FaustRocksStore, policy: Policy = POLICY, partition: int = 0) -> RocksPartition:
    local = local_partition(FaustTable(store), partition, 1, policy)
    assert isinstance(local, RocksPartition)
    return local


def entries(index: DueIndex) -> list[tuple[str, datetime]]:
    return list(index.due_before(FAR))


def committed(local: RocksPartition, *events: Any, offset: int) -> Outbox:
    """Apply `events` (at T0) over the partition's committed state and settle them."""
    outbox = Outbox(0, local)
    engine = Engine(POLICY, store=outbox)
    for record in events:
        engine.apply(record, T0)
    batch = outbox.take()
    batch.changelog_offset = offset
    outbox.settle(batch)
    return outbox


instants = st.datetimes(timezones=st.just(UTC))
order_ids = st.text(min_size=1, max_size=12)


@given(st.lists(st.tuples(instants, order_ids), min_size=1, max_size=30))
def test_entry_keys_sort_by_due_then_order_id_and_read_back(
    items: list[tuple[datetime, str]],
) -> None:
    keys = [entry_key(when, order_id) for when, order_id in items]
    assert [parse_entry(key) for key in keys] == [(o, w) for w, o in items]
    by_key = sorted(range(len(items)), key=lambda i: keys[i])
    by_due = sorted(range(len(items)), key=lambda i: (items[i][0], items[i][1].encode()))
    assert [items[i] for i in by_key] == [items[i] for i in by_due]


def test_each_write_moves_the_order_s_one_entry_and_the_counts(store: FaustRocksStore) -> None:
    local = rocks(store)
    requested = event("aftersale.requested", order_id="o-1")
    committed(local, requested, offset=3)
    review = POLICY.deadlines["merchant_review"]
    first_reminder = T0 + review - POLICY.reminders["merchant_review"][0]
    assert entries(local.index) == [("o-1", first_reminder)]
    meta = local.index.current()
    assert meta is not None
    assert (meta.changelog_offset, meta.phases, meta.rules) == (
        3,
        {"review": 1},
        {"merchant_review": 1},
    )
    approved = event("aftersale.approved", timedelta(hours=1), order_id="o-1")
    committed(local, approved, offset=4)
    state = decode_state(local.get(b"o-1") or b"")
    assert entries(local.index) == [("o-1", state.next_due(POLICY))]
    meta = local.index.current()
    assert meta is not None
    assert meta.phases == {"awaiting_return": 1}
    assert meta.rules == {"buyer_return": 1}
    local.write({b"o-1": None}, changelog_offset=5)
    assert entries(local.index) == []
    meta = local.index.current()
    assert meta is not None
    assert (meta.changelog_offset, meta.phases, meta.rules) == (5, {}, {})
    assert (meta.orders, meta.due) == (0, 0)


def test_a_store_written_without_the_index_is_rebuilt_once(store: FaustRocksStore) -> None:
    local = rocks(store)
    committed(local, event("aftersale.requested", order_id="o-1"), offset=3)
    expected = entries(local.index)
    # what a store written before the index existed looks like: state, an offset, no meta
    local.db.put(b"o-2", local.get(b"o-1") or b"")
    local.db.put(local.offset_key, b"9")
    assert local.index.current() is None
    local.write({b"o-3": None}, changelog_offset=10)  # a stale index is left alone
    assert local.index.current() is None
    meta = local.index.rebuild(local.items())
    assert meta.changelog_offset == 10
    assert meta.phases == {"review": 2}
    assert (meta.orders, meta.due) == (2, 2)
    assert entries(local.index) == sorted([*expected, ("o-2", expected[0][1])])
    assert local.index.current() == meta


def test_another_policy_makes_the_index_stale(store: FaustRocksStore) -> None:
    committed(rocks(store), event("aftersale.requested", order_id="o-1"), offset=3)
    assert rocks(store).index.current() is not None
    other = Policy(reminders={"merchant_review": (), "buyer_return": (), "merchant_receipt": ()})
    assert rocks(store, other).index.current() is None


def test_an_empty_store_starts_a_current_index(store: FaustRocksStore) -> None:
    meta = rocks(store).index.current()
    assert meta is not None
    assert meta.changelog_offset is None


def test_the_index_survives_reopening_the_database(tmp_path: Path) -> None:
    first = FaustRocksStore(tmp_path)
    local = rocks(first)
    committed(local, event("aftersale.requested", order_id="o-1"), offset=7)
    expected = entries(local.index)
    del local
    first.close()
    gc.collect()  # the column family's handles hold the database open
    again = FaustRocksStore(tmp_path)
    index = rocks(again).index
    assert index.current() is not None
    assert entries(index) == expected
    assert list(index.due_before(expected[0][1])) == []  # [start, end): the end excluded
    assert list(index.due_before(FAR, start=expected[0][1])) == expected
    again.close()


def test_restored_changelog_records_go_through_the_index(store: FaustRocksStore) -> None:
    changelog_write.install()
    table = FaustTable(store)
    route_restores(table, lambda: POLICY)
    source = FaustRocksStore(store.folder / "source")
    outbox = committed(rocks(source), event("aftersale.requested", order_id="o-1"), offset=0)
    value = outbox.local.get(b"o-1")

    def record(key: bytes, value: bytes | None, offset: int) -> Any:
        message = SimpleNamespace(partition=0, key=key, value=value, offset=offset)
        return SimpleNamespace(message=message)

    batch = [record(b"o-1", value, 4), record(b"o-2", value, 5), record(b"o-2", None, 6)]
    # faust's Store method, as installed, over a store with only what it uses
    faust_rocksdb.Store.apply_changelog_batch(store, batch, None, None)  # type: ignore[arg-type]
    index = rocks(store).index
    meta = index.current()
    assert meta is not None
    assert meta.changelog_offset == 6
    assert [order for order, _ in entries(index)] == ["o-1"]  # o-2 restored, then deleted
    assert store.persisted_offset(0) == 6
    source.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_an_index_kept_by_writes_equals_one_rebuilt_from_the_state(scenario: Scenario) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = FaustRocksStore(Path(folder))
        local = rocks(store, scenario.policy)
        outbox = Outbox(0, local)
        engine = Engine(scenario.policy, store=outbox)
        clock: datetime | None = None
        offset = 0
        for value in scenario.records:
            try:
                record = decode(orjson.dumps(value))
            except InputError:
                continue
            clock = record.occurred_at if clock is None else max(clock, record.occurred_at)
            engine.advance(clock)
            engine.apply(record, clock)
            batch = outbox.take(encode)
            offset += len(batch.states)
            batch.changelog_offset = offset
            outbox.settle(batch)
        kept, meta = entries(local.index), local.index.current()
        assert meta is not None
        expected = sorted(
            (key.decode(), due)
            for key, data in local.items()
            if (due := decode_state(data).next_due(scenario.policy)) is not None
        )
        assert sorted(kept, key=lambda e: (e[1], e[0].encode())) == kept  # in due order
        assert sorted(kept) == expected
        rebuilt = local.index.rebuild(local.items())
        assert (meta.phases, meta.rules) == (rebuilt.phases, rebuilt.rules)
        assert (meta.orders, meta.due) == (rebuilt.orders, rebuilt.due)
        assert sorted(entries(local.index)) == expected
        del local, outbox, engine
        store.close()
