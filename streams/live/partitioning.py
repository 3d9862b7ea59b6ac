"""Where a key belongs: Kafka's default partitioner (murmur2 of the key, as the Java client and
aiokafka place keys; the contract's partitioning)."""

from __future__ import annotations

import struct
from typing import Final

_MIX: Final = 0x5BD1E995
_SEED: Final = 0x9747B28C
_WORDS = struct.Struct("<I").iter_unpack
#: Keys whose partition is remembered (one order's records repeat its key); cleared when full.
CACHE_KEYS: Final = 1 << 16


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2), 32-bit unsigned.

    aiokafka's own reads the key byte by byte (3.8 us for an order id here); this reads it a
    word at a time (2.3 us) and gives the same hash."""
    length = len(data)
    h = _SEED ^ length
    whole = length & ~3
    for (k,) in _WORDS(data[:whole]):
        k = (k * _MIX) & 0xFFFFFFFF
        k ^= k >> 24
        h = ((h * _MIX) & 0xFFFFFFFF) ^ ((k * _MIX) & 0xFFFFFFFF)
    tail = length & 3
    if tail:
        if tail == 3:
            h ^= data[whole + 2] << 16
        if tail >= 2:
            h ^= data[whole + 1] << 8
        h ^= data[whole]
        h = (h * _MIX) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * _MIX) & 0xFFFFFFFF
    return h ^ (h >> 15)


class Partitioner:
    """The partition of a key among `partitions`, remembered for recently seen keys."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self._cache: dict[bytes, int] = {}

    def __call__(self, key: bytes) -> int:
        partition = self._cache.get(key)
        if partition is None:
            partition = (murmur2(key) & 0x7FFFFFFF) % self.partitions
            if len(self._cache) >= CACHE_KEYS:
                self._cache.clear()
            self._cache[key] = partition
        return partition


def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a UTF-8 key."""
    return (murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % partitions
