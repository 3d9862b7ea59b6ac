"""The contract's partitioning: murmur2 of the key, as Kafka's Java client and aiokafka place it."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from streams.live.partitioning import CACHE_KEYS, Partitioner, murmur2, partition_of


@given(st.binary(max_size=300))
def test_murmur2_is_kafkas(key: bytes) -> None:
    assert murmur2(key) == aiokafka_murmur2(key) & 0xFFFFFFFF


@given(st.text(min_size=1, max_size=40), st.integers(1, 64))
def test_partition_of_matches_kafkas_default_partitioner(key: str, partitions: int) -> None:
    expected = DefaultPartitioner()(key.encode(), list(range(partitions)), list(range(partitions)))
    assert partition_of(key, partitions) == expected
    assert Partitioner(partitions)(key.encode()) == expected


def test_the_cache_stays_bounded() -> None:
    partitioner = Partitioner(12)
    for n in range(CACHE_KEYS + 10):
        partitioner(str(n).encode())
    assert len(partitioner._cache) <= CACHE_KEYS
