"""Builders of input events for tests: valid by default, any field overridable."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import orjson
import rocksdict
from faust.stores.rocksdb import RocksDBOptions

from streams.contract.events import Event, decode
from streams.contract.times import format_time

T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
_ids = count(1)

_DEFAULTS: dict[str, dict[str, Any]] = {
    "order.paid": {"merchant_id": "m-3", "buyer_id": "b-9", "amount": 5990},
    "order.shipped": {"carrier": "SF", "waybill": "SF1"},
    "aftersale.requested": {
        "kind": "return_refund",
        "reason": "quality",
        "amount": 5990,
        "merchant_id": "m-3",
        "buyer_id": "b-9",
    },
    "aftersale.rejected": {"note": "no"},
    "aftersale.return_shipped": {"carrier": "YTO", "waybill": "YT1"},
    "aftersale.resolved": {"decision": "resume"},
    "aftersale.reshipped": {"carrier": "SF", "waybill": "SF2"},
    "aftersale.merchant_refunded": {"amount": 5990, "merchant_id": "m-3", "buyer_id": "b-9"},
}


def body(
    event_type: str, at: datetime | timedelta = T0, /, order_id: str = "o-7", **fields: Any
) -> dict[str, Any]:
    """A record value of type `kind`; `at` is an instant or an offset from T0."""
    when = T0 + at if isinstance(at, timedelta) else at
    out: dict[str, Any] = {
        "event_id": f"e-{next(_ids)}",
        "type": event_type,
        "order_id": order_id,
        "occurred_at": format_time(when),
    }
    if event_type.startswith("aftersale."):
        out["case_id"] = "c-42"
    out.update(_DEFAULTS.get(event_type, {}))
    out.update(fields)
    return out


def event(
    event_type: str, at: datetime | timedelta = T0, /, order_id: str = "o-7", **fields: Any
) -> Event:
    """A decoded, validated Event."""
    return decode(orjson.dumps(body(event_type, at, order_id=order_id, **fields)))


class DictLocalStore:
    """A `streams.live.outbox.LocalStore` in a dict, recording every write and its offset."""

    #: No due index kept (as the memory store).
    index: None = None

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.writes: list[tuple[dict[bytes, bytes | None], int | None]] = []

    @property
    def offsets(self) -> list[int | None]:
        """The changelog offset of each write, in order."""
        return [offset for _, offset in self.writes]

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(list(self.data.items()))

    def write(self, items: Mapping[bytes, bytes | None], changelog_offset: int | None) -> None:
        for key, value in items.items():
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value
        self.writes.append((dict(items), changelog_offset))

    def changelog_offset(self) -> int | None:
        offsets = [offset for offset in self.offsets if offset is not None]
        return offsets[-1] if offsets else None


class FaustRocksStore:
    """The two things RocksPartition uses of faust's rocksdb Store, over real databases."""

    offset_key = b"__faust\0offset__"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._dbs: dict[int, rocksdict.Rdict] = {}

    def _db_for_partition(self, partition: int) -> rocksdict.Rdict:
        if partition not in self._dbs:
            path = self.folder / f"p{partition}.db"
            self._dbs[partition] = RocksDBOptions(use_rocksdict=True).open(path)
        return self._dbs[partition]

    def persisted_offset(self, partition: int) -> int | None:
        value = self._db_for_partition(partition).get(self.offset_key)
        return None if value is None else int(value)

    def close(self) -> None:
        for db in self._dbs.values():
            db.close()


class FaustTable:
    """A faust table as `streams.live.table_store.local_partition` sees it: its store."""

    def __init__(self, data: Any) -> None:
        self.data = data
