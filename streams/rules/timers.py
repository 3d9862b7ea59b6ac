"""A due-time index bucketed by time (a timer wheel with 64-second slots).

Keys (order ids) are scheduled at an instant; `pop_next(now)` hands them back one at a time in
(due time, key) order, which depends on nothing but the keys and their due times: a replay
sharded by order fires in the same order as one that is not (`streams/tools/replay_jobs.py`).
Rescheduling a key simply supersedes its older entry, which is skipped when its slot is
reached, so scheduling costs O(1) and nothing is searched.

A wheel may hold only a window of time (`horizon`, and `horizon_key` within that instant): a
key whose (due time, key) is at or after (`horizon`, `horizon_key`) is dropped, and its owner,
which keeps every due time elsewhere (the worker's on-disk index, ordered the same way), hands
it back with `widen` once the window reaches it. The key part lets the owner hand a million
keys due in the same instant back a chunk at a time.
"""

from __future__ import annotations

import heapq
from bisect import insort
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Final

#: (due, key, sequence): the sequence tells the live entry of a key from superseded ones.
_Entry = tuple[datetime, str, int]
_NEVER: Final = datetime.max.replace(tzinfo=UTC)
#: A slot spans 2**6 = 64 seconds. Due times are spread thin (one per few seconds in a busy
#: replay), so one-second slots held about one entry each and every pop paid a heap pop;
#: wider slots sort a few entries at once instead (replay measured ~5% faster).
_SLOT_SHIFT: Final = 6


class TimerWheel:
    """Due-time index: schedule, supersede, and pop keys in time order."""

    def __init__(self) -> None:
        self._seq = 0
        self._live: dict[str, int] = {}
        self._slots: dict[int, list[_Entry]] = {}
        self._slot_heap: list[int] = []
        # The slot being drained, sorted; entries before `_pos` were handed out or skipped.
        self._current: list[_Entry] = []
        self._current_slot: int | None = None
        self._pos = 0
        #: Nothing live is due before `floor`: a lower bound (exact after `peek` or `pop_next`)
        #: that lets a caller skip the wheel when nothing can be due yet.
        self.floor = _NEVER
        #: Keys due at or after `horizon` are not held (None: every key is), except those due
        #: at `horizon` itself whose key sorts before `horizon_key` ("": none of them).
        self.horizon: datetime | None = None
        self.horizon_key = ""

    def __contains__(self, key: object) -> bool:
        return key in self._live

    def __len__(self) -> int:
        return len(self._live)

    def schedule(self, key: str, when: datetime | None) -> None:
        """Make `when` the key's only due time (None: unschedule; at or after the horizon:
        not held here)."""
        if when is None or self._beyond(when, key):
            self._live.pop(key, None)
            return
        self._seq += 1
        entry = (when, key, self._seq)
        self._live[key] = self._seq
        if when < self.floor:
            self.floor = when
        slot = int(when.timestamp()) >> _SLOT_SHIFT
        if self._current_slot is not None and slot <= self._current_slot:
            insort(self._current, entry, lo=self._pos)
            return
        bucket = self._slots.get(slot)
        if bucket is None:
            self._slots[slot] = [entry]
            heapq.heappush(self._slot_heap, slot)
        else:
            bucket.append(entry)

    def load(self, entries: Iterable[tuple[str, datetime]]) -> None:
        """`schedule` each (key, when) in turn; into an empty wheel, without its per-entry
        bookkeeping (a rebuilt index of a million orders: half the time)."""
        if self._live or self._slots or self._pos < len(self._current):
            for key, when in entries:
                self.schedule(key, when)
            return
        live, slots, seq, floor = self._live, self._slots, self._seq, self.floor
        beyond = self._beyond
        for key, when in entries:
            if beyond(when, key):
                continue
            seq += 1
            live[key] = seq
            if when < floor:
                floor = when
            slot = int(when.timestamp()) >> _SLOT_SHIFT
            bucket = slots.get(slot)
            if bucket is None:
                slots[slot] = [(when, key, seq)]
            else:
                bucket.append((when, key, seq))
        self._seq, self.floor = seq, floor
        self._current, self._current_slot, self._pos = [], None, 0
        self._slot_heap = list(slots)
        heapq.heapify(self._slot_heap)

    def _beyond(self, when: datetime, key: str) -> bool:
        """Whether (when, key) is at or after the horizon: not held here."""
        horizon = self.horizon
        if horizon is None or when < horizon:
            return False
        return when > horizon or key >= self.horizon_key

    def widen(
        self, horizon: datetime, entries: Iterable[tuple[str, datetime]], horizon_key: str = ""
    ) -> None:
        """Move the horizon out to (`horizon`, `horizon_key`) and schedule `entries` (the keys
        due between the old horizon and the new), except keys held already: their entry is
        newer."""
        self.horizon, self.horizon_key = horizon, horizon_key
        live = self._live
        for key, when in entries:
            if key not in live:
                self.schedule(key, when)

    def discard(self, key: str) -> None:
        """Forget `key` (its entries are skipped when reached)."""
        self._live.pop(key, None)

    def peek(self) -> datetime | None:
        """The earliest live due time, or None when nothing is scheduled."""
        entry = self._head()
        return None if entry is None else entry[0]

    def pop_next(self, now: datetime) -> tuple[str, datetime] | None:
        """Remove and return the earliest (key, due) due at or before `now`, else None."""
        if now < self.floor:
            return None
        entry = self._head()
        if entry is None or entry[0] > now:
            return None
        self._pos += 1
        del self._live[entry[1]]
        return entry[1], entry[0]

    def _head(self) -> _Entry | None:
        while True:
            current, pos, live = self._current, self._pos, self._live
            while pos < len(current):
                entry = current[pos]
                if live.get(entry[1]) == entry[2]:
                    self._pos, self.floor = pos, entry[0]
                    return entry
                pos += 1
            self._pos = pos
            if not self._slot_heap:
                self.floor = _NEVER
                return None
            slot = heapq.heappop(self._slot_heap)
            bucket = self._slots.pop(slot)
            bucket.sort()
            self._current, self._current_slot, self._pos = bucket, slot, 0
