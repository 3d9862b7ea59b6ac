"""The engine's store over a faust-like table of raw bytes, and key partitioning."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from streams.engine import Engine
from streams.policy import Policy
from streams.table_store import TableStore, partition_of
from tests.unit.factories import T0, event


@given(st.text(min_size=1, max_size=40), st.integers(1, 64))
def test_partition_of_matches_kafkas_default_partitioner(key: str, partitions: int) -> None:
    expected = DefaultPartitioner()(key.encode(), list(range(partitions)), list(range(partitions)))
    assert partition_of(key, partitions) == expected


def test_engine_state_round_trips_through_a_bytes_table() -> None:
    table: dict[bytes, bytes] = {}
    store = TableStore(table)
    engine = Engine(Policy(), store=store)
    engine.apply(event("aftersale.requested"), T0)
    assert list(table) == [b"o-7"]
    assert isinstance(table[b"o-7"], bytes)
    assert list(store) == ["o-7"]
    assert len(store) == 1
    case = store["o-7"].open
    assert case is not None
    assert case.case_id == "c-42"
    assert store.get("missing") is None
    fresh = Engine(Policy(), store=TableStore(table))
    assert fresh.rebuild() == 1
    del store["o-7"]
    assert table == {}
