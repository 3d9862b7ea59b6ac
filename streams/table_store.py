"""The engine's store over a faust table: OrderState values as bytes (`state_codec`)."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

from aiokafka.partitioner import murmur2

from streams.orders import OrderState
from streams.state_codec import decode_state, encode


def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a UTF-8 key (murmur2, as the Java client)."""
    hashed: int = murmur2(key.encode("utf-8"))
    return (hashed & 0x7FFFFFFF) % partitions


class TableStore(MutableMapping[str, OrderState]):
    """order_id -> OrderState over a faust table keyed and valued by raw bytes.

    Writes must happen inside stream iteration (faust's rule); the worker only writes from
    its agent, which also handles the tick records that fire deadlines.
    """

    def __init__(self, table: Any) -> None:
        self.table = table

    def __getitem__(self, order_id: str) -> OrderState:
        data = self.table.get(order_id.encode("utf-8"))
        if data is None:
            raise KeyError(order_id)
        return decode_state(data)

    def get(self, order_id: str, default: Any = None) -> Any:  # faster than KeyError
        data = self.table.get(order_id.encode("utf-8"))
        return default if data is None else decode_state(data)

    def __setitem__(self, order_id: str, state: OrderState) -> None:
        self.table[order_id.encode("utf-8")] = encode(state)

    def __delitem__(self, order_id: str) -> None:
        del self.table[order_id.encode("utf-8")]

    def __iter__(self) -> Iterator[str]:
        for key in self.table:
            yield key.decode("utf-8") if isinstance(key, bytes) else str(key)

    def __len__(self) -> int:
        return len(self.table)
