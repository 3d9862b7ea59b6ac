"""The due index kept on disk, beside the state it indexes (one RocksDB column family per
partition database of the `orders` table).

A start used to rebuild each partition's due index by reading and decoding every order in it
(about a second per 175,000 orders, most of a restart with a million open cases). Now every
write to a partition's state, whether the worker settles a committed batch (`outbox.py`) or
faust restores changelog records (`patches/changelog_write.py`), updates the index in the
same RocksDB write batch:

    column family "due":  <due instant, 8 bytes big-endian µs + 2**63><order_id>  -> b""
                          b""  -> meta: format, policy fingerprint, changelog offset the
                                  index is current up to, open cases by phase, running
                                  deadlines by rule

An order has exactly one entry, at its committed state's next due time, or none. A start
reads the entries due before its window's end (`Runtime`), and the gauges' counts from the
meta, instead of every order. The index counts as current only if its meta names this
build's format, the policy in force (due times depend on its reminders and retention) and
the changelog offset the store itself is at; otherwise (a store written before the index
existed, a policy change) the start rebuilds it once from the state.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec
import rocksdict

from streams.errors import ContractError
from streams.rules.effects import Phase
from streams.rules.orders import next_due
from streams.rules.policy import Policy, Rule
from streams.rules.state_codec import decode_due

#: The column family's name in each partition database.
FAMILY: Final = "due"
#: Bumped when the entries' layout or meaning changes: an index of another format is rebuilt.
FORMAT: Final = 1
META_KEY: Final = b""
_BIAS: Final = 1 << 63
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
#: Past every entry key (entries are 8 bytes of instant and a non-empty order id).
_END: Final = b"\xff" * 9


class Meta(msgspec.Struct, forbid_unknown_fields=True):
    """What the index is current with, and the committed counts of the gauges."""

    format: int
    policy: str
    changelog_offset: int | None
    #: Orders in the store, and how many of them have a due time (an index entry).
    orders: int = 0
    due: int = 0
    phases: dict[str, int] = msgspec.field(default_factory=dict)
    rules: dict[str, int] = msgspec.field(default_factory=dict)


_meta_encoder: Final = msgspec.json.Encoder(order="deterministic")
_meta_decoder: Final = msgspec.json.Decoder(Meta)


def policy_fingerprint(policy: Policy) -> str:
    """A digest of everything in `policy` (due times depend on parts of it)."""
    parts: tuple[object, ...] = (
        sorted(policy.deadlines.items()),
        policy.no_reason_window,
        sorted(policy.reminders.items()),
        policy.order_retention,
    )
    # (only when there are some: a store indexed before these existed stays valid)
    if policy.freezes:
        parts += (policy.freezes,)
    if policy.versions:
        parts += (tuple((v.effective_from, policy_fingerprint(v)) for v in policy.versions),)
    text = repr(parts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def entry_key(when: datetime, order_id: str) -> bytes:
    """The index key of `order_id` due at `when`: sorts by instant, then order id."""
    micros = (when - _EPOCH) // timedelta(microseconds=1)
    return (micros + _BIAS).to_bytes(8, "big") + order_id.encode("utf-8")


def instant_key(when: datetime) -> bytes:
    """The first key due at or after `when`."""
    micros = (when - _EPOCH) // timedelta(microseconds=1)
    return (micros + _BIAS).to_bytes(8, "big")


def parse_entry(key: bytes) -> tuple[str, datetime]:
    """(order_id, due) of an index key."""
    micros = int.from_bytes(key[:8], "big") - _BIAS
    return key[8:].decode("utf-8"), _EPOCH + timedelta(microseconds=micros)


class Facts(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """What the index and the gauges take from one stored state."""

    due: datetime | None
    phase: Phase | None
    rule: Rule | None


_NONE: Final = Facts(None, None, None)


def facts_of(data: bytes | None, policy: Policy) -> Facts:
    """The due time, open phase and running rule of stored state bytes (None: no state;
    bytes that are not state have none of them)."""
    if data is None:
        return _NONE
    try:
        view = decode_due(data)
    except ContractError:
        return _NONE  # unreadable state: the engine refuses it when it reads the order
    case = view.open
    due = next_due(case, view.last_at, policy)
    if case is None:
        return Facts(due, None, None)
    rule = case.rule if case.rule is not None and case.due_at is not None else None
    return Facts(due, case.phase, rule)


class DueIndex:
    """The due index of one partition database (a faust rocksdb store's)."""

    def __init__(self, db: Any, offset_key: bytes, policy: Policy) -> None:
        self.db, self.offset_key, self.policy = db, offset_key, policy
        self.fingerprint = policy_fingerprint(policy)
        try:
            self.family = db.get_column_family_handle(FAMILY)
        except Exception:  # rocksdict raises a bare Exception for a missing family
            db.create_column_family(FAMILY, _family_options())
            self.family = db.get_column_family_handle(FAMILY)
        self.view = db.get_column_family(FAMILY)

    # reading ------------------------------------------------------------------------------
    def meta(self) -> Meta | None:
        data: bytes | None = self.view.get(META_KEY)
        if data is None:
            return None
        try:
            meta: Meta = _meta_decoder.decode(data)
        except msgspec.DecodeError:
            return None  # written by another build: rebuilt
        return meta

    def current(self) -> Meta | None:
        """The meta if the index is current with the store and the policy, else None. A store
        with nothing in it starts a current, empty index."""
        meta = self.meta()
        stored = self.db.get(self.offset_key)
        offset = None if stored is None else int(stored)
        if meta is None and offset is None and self._no_state():
            meta = Meta(FORMAT, self.fingerprint, None)
            self.view.put(META_KEY, _meta_encoder.encode(meta))
            return meta
        if (
            meta is None
            or meta.format != FORMAT
            or meta.policy != self.fingerprint
            or meta.changelog_offset != offset
        ):
            return None
        return meta

    def due_before(
        self, end: datetime, start: datetime | None = None, start_key: str = ""
    ) -> Iterator[tuple[str, datetime]]:
        """(order_id, due) of the entries due in [start, end), earliest first (ties by order
        id); with `start_key`, those due at `start` from that order id on."""
        stop = instant_key(end)
        first = b"\x00" if start is None else instant_key(start) + start_key.encode("utf-8")
        for key in self.view.keys(from_key=first):
            if key >= stop:
                return
            yield parse_entry(key)

    def adopt(self, policy: Policy) -> None:
        """Go on under `policy`, which gives every stored state the due time the current one
        gives it (`reload_refusal` allows no other): a current index stays current."""
        meta = self.current()
        self.policy, self.fingerprint = policy, policy_fingerprint(policy)
        if meta is not None:
            meta.policy = self.fingerprint
            self.view.put(META_KEY, _meta_encoder.encode(meta))

    def __len__(self) -> int:
        return sum(1 for key in self.view.keys() if key != META_KEY)  # noqa: SIM118

    # writing ------------------------------------------------------------------------------
    def update(
        self,
        batch: Any,
        items: Mapping[bytes, bytes | None],
        changelog_offset: int | None,
    ) -> None:
        """Add to `batch` (about to write `items` and `changelog_offset` to the store) what
        keeps the index current with them, if it is current now."""
        meta = self.current()
        if meta is None:
            return  # stale: left as it is, and rebuilt by the next start
        keys = list(items)
        olds: list[bytes | None] = self.db.get(keys) if keys else []
        phases, rules = Counter(meta.phases), Counter(meta.rules)
        orders, due = meta.orders, meta.due
        family, policy = self.family, self.policy
        for key, old in zip(keys, olds, strict=True):
            new = items[key]
            orders += (new is not None) - (old is not None)
            before, after = facts_of(old, policy), facts_of(new, policy)
            if before.due != after.due:
                order_id = key.decode("utf-8")
                if before.due is not None:
                    batch.delete(entry_key(before.due, order_id), family)
                    due -= 1
                if after.due is not None:
                    batch.put(entry_key(after.due, order_id), b"", family)
                    due += 1
            if before.phase != after.phase:
                if before.phase is not None:
                    phases[before.phase] -= 1
                if after.phase is not None:
                    phases[after.phase] += 1
            if before.rule != after.rule:
                if before.rule is not None:
                    rules[before.rule] -= 1
                if after.rule is not None:
                    rules[after.rule] += 1
        offset = meta.changelog_offset if changelog_offset is None else changelog_offset
        updated = Meta(
            FORMAT, self.fingerprint, offset, orders, due, _positive(phases), _positive(rules)
        )
        batch.put(META_KEY, _meta_encoder.encode(updated), family)

    def rebuild(self, states: Iterator[tuple[bytes, bytes]]) -> Meta:
        """Replace the index with one built from every stored state (`states`)."""
        stored = self.db.get(self.offset_key)
        offset = None if stored is None else int(stored)
        phases: Counter[str] = Counter()
        rules: Counter[str] = Counter()
        family, policy = self.family, self.policy
        batch = rocksdict.WriteBatch(raw_mode=True)
        batch.delete(META_KEY, family)
        batch.delete_range(b"\x00", _END, family)
        written = orders = 0
        for key, data in states:
            orders += 1
            facts = facts_of(data, policy)
            if facts.due is not None:
                batch.put(entry_key(facts.due, key.decode("utf-8")), b"", family)
                written += 1
                if written % 100_000 == 0:
                    self.db.write(batch)
                    batch = rocksdict.WriteBatch(raw_mode=True)
            if facts.phase is not None:
                phases[facts.phase] += 1
            if facts.rule is not None:
                rules[facts.rule] += 1
        # the meta last: an index cut short by a crash is not current, and is built again
        meta = Meta(FORMAT, self.fingerprint, offset, orders, written, dict(phases), dict(rules))
        batch.put(META_KEY, _meta_encoder.encode(meta), family)
        self.db.write(batch)
        return meta

    def _no_state(self) -> bool:
        return all(key == self.offset_key for key in self.db.keys())  # noqa: SIM118 (an Rdict)


def _family_options() -> Any:
    """The index's column family: small keys, few writes; a small memtable."""
    options = rocksdict.Options(raw_mode=True)
    options.set_write_buffer_size(4 * 1024 * 1024)
    options.set_max_write_buffer_number(2)
    return options


def _positive(counts: Counter[str]) -> dict[str, int]:
    return {name: n for name, n in counts.items() if n}
