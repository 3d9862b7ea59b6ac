"""The read side in Redis (redis-py's asyncio client): the projection's writes and reads.

Keys (P = `<app id>:`):

    P order:<order_id>        hash: `meta` -> JSON, `case:<case_id>` -> JSON (one per case)
    P merchant:<merchant_id>  hash: `paid:<YYYY-MM-DD>`, `refunded:<YYYY-MM-DD>` -> orders
    P paid:<YYYY-MM-DD>       sorted set: merchant_id scored by its paid orders that day
    P refunded:<YYYY-MM-DD>   sorted set: merchant_id scored by its refunded orders that day
    P offset:<topic>:<part>   string: the last offset of that partition applied here

A batch costs two round trips, whatever its size: a read-only script returns the partitions'
offsets and the stored fields the batch's records need; `projection.plan_batch` applies the
records to them; a second script checks that the offsets are still those it read (else
nothing is written and the batch is decided again) and writes the orders, the counts and the
new offsets, atomically (see `RedisStore.apply_batch`). The scripts know nothing of the
projection: one reads given fields, the other executes given writes.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final, NamedTuple

import msgspec
import orjson
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, AuthorizationError, NoPermissionError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streams.errors import AftersaleError, ConfigError
from streams.readside.projection import (
    META,
    PAID,
    REFUNDED,
    CountKind,
    Delivered,
    OrderView,
    Plan,
    Snapshot,
    WindowCounts,
    needed_fields,
    plan_batch,
)
from streams.readside.settings import ReadSettings

CASE: Final = "case:"

#: Every merchant with at least ARGV[1] paid orders over the window's days (KEYS: the paid
#: sorted sets of those days, then the refunded ones), as merchant, paid, refunded triples.
#: Read-only; runs in Redis so that only candidates travel. The ranking is `projection.rank`.
CANDIDATES_LUA: Final = """#!lua flags=no-writes
local n = #KEYS / 2
local min = tonumber(ARGV[1])
local function union(first)
  local args = {n}
  for i = first, first + n - 1 do args[#args + 1] = KEYS[i] end
  args[#args + 1] = 'WITHSCORES'
  return redis.call('ZUNION', unpack(args))
end
local paid = union(1)
local refunded = {}
local r = union(n + 1)
for i = 1, #r, 2 do refunded[r[i]] = r[i + 1] end
local out = {}
for i = 1, #paid, 2 do
  if tonumber(paid[i + 1]) >= min then
    out[#out + 1] = paid[i]
    out[#out + 1] = paid[i + 1]
    out[#out + 1] = refunded[paid[i]] or '0'
  end
end
return out
"""


#: The offsets (KEYS[1..ARGV[1]]) and, per order key after them, the fields listed in the
#: msgpack ARGV[2] (a list of lists), as one msgpack value: [offsets, [values per order]],
#: false for what is missing. Read-only.
LOAD_LUA: Final = """#!lua flags=no-writes
local np = tonumber(ARGV[1])
local fields = cmsgpack.unpack(ARGV[2])
local offsets = {}
for i = 1, np do offsets[i] = redis.call('GET', KEYS[i]) end
local values = {}
for i, names in ipairs(fields) do
  if #names > 0 then
    values[i] = redis.call('HMGET', KEYS[np + i], unpack(names))
  else
    values[i] = {}
  end
end
return cmsgpack.pack({offsets, values})
"""

#: Compare and set: if every offset key (KEYS[1..np], np = ARGV[1]) still holds ARGV[1 + i]
#: ("-1": no key), run the writes of the msgpack ARGV[2 + 2np] = [checks, ops], ops as
#: [op, key index, ...]: D delete; H hset fields; I hincrby field n; Z zincrby member n; then
#: set the offsets to ARGV[1 + np + i] and return 1; else write nothing and return 0. Before
#: the first write, `checks` ([key index, type, ...]: the counters' keys) are checked to be of
#: their type or absent, as LOAD_LUA's HMGET checked the orders' keys: a key of another type
#: (WRONGTYPE) fails the batch with nothing written.
APPLY_LUA: Final = """#!lua
local np = tonumber(ARGV[1])
for i = 1, np do
  local current = redis.call('GET', KEYS[i]) or '-1'
  if current ~= ARGV[1 + i] then return 0 end
end
local payload = cmsgpack.unpack(ARGV[2 + 2 * np])
local checks, ops = payload[1], payload[2]
for i = 1, #checks, 2 do
  local has = redis.call('TYPE', KEYS[checks[i]]).ok
  if has ~= checks[i + 1] and has ~= 'none' then
    return redis.error_reply('WRONGTYPE ' .. KEYS[checks[i]] .. ' is a ' .. has)
  end
end
for _, op in ipairs(ops) do
  local kind, key = op[1], KEYS[op[2]]
  if kind == 'D' then
    redis.call('DEL', key)
  elseif kind == 'H' then
    redis.call('HSET', key, unpack(op[3]))
  elseif kind == 'I' then
    redis.call('HINCRBY', key, op[3], op[4])
  else
    redis.call('ZINCRBY', key, op[4], op[3])
  end
end
for i = 1, np do redis.call('SET', KEYS[i], ARGV[1 + np + i]) end
return 1
"""


class StoreUnavailable(AftersaleError):
    """Redis did not answer (down, unreachable, loading, refusing writes)."""

    retriable = True


class StoreRefused(ConfigError):
    """Redis refused this client: wrong or missing credentials, no permission (ACL), or a
    server certificate the configured CA does not trust. Waiting cannot help."""


class BatchResult(NamedTuple):
    """What `apply_batch` did."""

    #: Records applied (undecodable ones not included).
    applied: int
    #: Records skipped: at or before their partition's stored offset (applied before).
    skipped: int
    #: The stored offset of each partition of the batch after it (-1: none applied yet).
    offsets: dict[int, int]
    #: Partitions whose stored offset was behind what the caller expected (Redis lost
    #: writes): none of their records were applied; re-read each after its stored offset.
    rewound: dict[int, int]
    #: Times the transaction was retried because another projector wrote a partition of it.
    conflicts: int


def connect(settings: ReadSettings) -> Redis:
    """A client of the read side's Redis; no retries of its own (callers decide), every
    command bounded by `redis_timeout`."""
    options: dict[str, Any] = {
        "socket_timeout": settings.redis_timeout,
        "socket_connect_timeout": settings.redis_timeout,
        "retry": Retry(NoBackoff(), 0),
    }
    if settings.redis_password.value:
        options["password"] = settings.redis_password.value
    if settings.redis_url.tls and settings.redis_ssl_cafile is not None:
        options["ssl_ca_certs"] = str(settings.redis_ssl_cafile)
    client: Redis = Redis.from_url(settings.redis_url.value, **options)
    return client


class Keys:
    """The read side's key names under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def order(self, order_id: str) -> str:
        return f"{self.prefix}order:{order_id}"

    def merchant(self, merchant_id: str) -> str:
        return f"{self.prefix}merchant:{merchant_id}"

    def day(self, kind: CountKind, day: str) -> str:
        return f"{self.prefix}{kind}:{day}"

    def offset(self, topic: str, partition: int) -> str:
        return f"{self.prefix}offset:{topic}:{partition}"


def _bytes(value: bytes | str) -> bytes:
    """A reply as bytes (the client is built without decode_responses: always bytes)."""
    return value if isinstance(value, bytes) else value.encode()


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _fields(reply: Mapping[bytes | str, bytes | str]) -> dict[str, bytes | None]:
    return {_str(k): _bytes(v) for k, v in reply.items()}


def _view(order_id: str, fields: Mapping[str, bytes | str | bool | None]) -> OrderView:
    """An order view from stored hash fields (`meta`, `case:<id>`; None or False: absent);
    meta None if absent."""
    meta = fields.get(META)
    view = OrderView(order_id, orjson.loads(meta) if isinstance(meta, bytes | str) else None)
    for name, value in fields.items():
        if isinstance(value, bytes | str) and name.startswith(CASE):
            view.cases[name[len(CASE) :]] = orjson.loads(value)
    return view


_pack = msgspec.msgpack.Encoder().encode
#: LOAD_LUA's answer: Lua strings come back as msgpack str, missing values as false.
_unpack = msgspec.msgpack.Decoder(tuple[list[str | bool], list[list[str | bool]]]).decode


def _loaded(
    order_ids: list[str], needed: Mapping[str, list[str]], rows: list[list[str | bool]]
) -> dict[str, OrderView]:
    """The views LOAD_LUA's rows hold: per order, its meta then the cases `needed` names."""
    loads = orjson.loads
    views = {}
    for order_id, row in zip(order_ids, rows, strict=True):
        meta = row[0]
        if not isinstance(meta, str):  # false: no such order (cases are written with meta)
            views[order_id] = OrderView(order_id)
            continue
        view = views[order_id] = OrderView(order_id, loads(meta))
        cases = view.cases
        for case_id, value in zip(needed[order_id][1:], row[1:], strict=True):
            if isinstance(value, str):
                cases[case_id] = loads(value)
    return views


def _refused(exc: RedisError) -> bool:
    """Whether `exc` says this client is refused, rather than Redis being unavailable."""
    if isinstance(exc, AuthenticationError | AuthorizationError | NoPermissionError):
        return True
    return isinstance(exc, RedisConnectionError) and "CERTIFICATE_VERIFY_FAILED" in str(exc)


def _wrap(exc: RedisError) -> StoreUnavailable | StoreRefused:
    """A Redis failure as StoreRefused (credentials, permissions, an untrusted certificate)
    or StoreUnavailable: the connection's (down, unreachable, timed out), or an error Redis
    answered (loading, out of memory, read-only replica, ...)."""
    if _refused(exc):
        return StoreRefused(f"{type(exc).__name__}: {exc}")
    said = "" if isinstance(exc, RedisConnectionError | RedisTimeoutError) else "answered "
    return StoreUnavailable(f"{said}{type(exc).__name__}: {exc}")


async def admitted(store: RedisStore, shown_url: str) -> bool:
    """Ping Redis once, at start: True if it answers, False if it is unavailable (callers wait
    for it); raises StoreRefused, naming the URL as `shown_url` (password hidden), if it
    refuses this client."""
    try:
        await store.ping()
    except StoreUnavailable:
        return False
    except StoreRefused as exc:
        raise StoreRefused(f"Redis at {shown_url} refused this client: {exc}") from None
    return True


class RedisStore:
    """The read side in one Redis: the projector writes batches, the API reads."""

    def __init__(self, client: Redis, prefix: str, topic: str) -> None:
        self.client = client
        self.keys = Keys(prefix)
        self.topic = topic
        self._candidates = client.register_script(CANDIDATES_LUA)
        self._load = client.register_script(LOAD_LUA)
        self._apply = client.register_script(APPLY_LUA)

    # ------------------------------------------------------------------ writing

    async def stored_offsets(self, partitions: Collection[int]) -> dict[int, int]:
        """The last applied offset of each partition (-1: none)."""
        ordered = sorted(partitions)
        if not ordered:
            return {}
        try:
            values = await self.client.mget([self.keys.offset(self.topic, p) for p in ordered])
        except RedisError as exc:
            raise _wrap(exc) from exc
        return {p: -1 if v is None else int(v) for p, v in zip(ordered, values, strict=True)}

    async def apply_batch(
        self, batch: Sequence[Delivered], expected: Mapping[int, int]
    ) -> BatchResult:
        """Apply the records of `batch` past their partition's stored offset, with the new
        offsets, atomically; raise StoreUnavailable if Redis fails. Then the batch was
        applied whole or not at all (a reply lost after the write): calling again is safe,
        it skips what was applied.

        `expected` is the offset the caller believes stored for each partition (what it last
        applied, or read when it sought). A partition stored behind it lost writes (a Redis
        restarted from an older snapshot): its records are held back and it is `rewound`.
        The write is a compare and set on the offsets read: if another projector (one that
        had a partition before a rebalance) moved one of them meanwhile, nothing is written
        and the batch is decided again on what that one stored.
        """
        if not batch:
            return BatchResult(0, 0, {}, {}, 0)
        keys, topic = self.keys, self.topic
        partitions = sorted({item.partition for item in batch})
        offset_keys = [keys.offset(topic, p) for p in partitions]
        needed = needed_fields(batch)
        order_ids = list(needed)
        names = [[META, *(CASE + f for f in needed[o][1:])] for o in order_ids]
        conflicts = 0
        try:
            while True:
                raw = await self._load(
                    keys=offset_keys + [keys.order(o) for o in order_ids],
                    args=[len(partitions), _pack(names)],
                )
                raw_offsets, values = _unpack(raw)
                stored = {
                    p: -1 if v is False else int(v)
                    for p, v in zip(partitions, raw_offsets, strict=True)
                }
                rewound = {p: stored[p] for p in partitions if stored[p] < expected.get(p, -1)}
                todo = [
                    item
                    for item in batch
                    if item.partition not in rewound and item.offset > stored[item.partition]
                ]
                loaded = _loaded(order_ids, needed, values)
                plan = plan_batch(todo, loaded)
                offsets = {p: max(stored[p], plan.offsets.get(p, -1)) for p in partitions}
                write_keys, ops = self._ops(plan, len(partitions))
                done = await self._apply(
                    keys=offset_keys + write_keys,
                    args=[
                        len(partitions),
                        *(stored[p] for p in partitions),
                        *(offsets[p] for p in partitions),
                        _pack(ops),
                    ],
                )
                if done:
                    break
                conflicts += 1
        except RedisError as exc:
            raise _wrap(exc) from exc
        skipped = sum(1 for item in batch if item.offset <= stored[item.partition])
        return BatchResult(plan.applied, skipped, offsets, rewound, conflicts)

    def _ops(self, plan: Plan, offset_keys: int) -> tuple[list[str], list[list[Any]]]:
        """The writes of `plan` for APPLY_LUA: the keys, and [checks, operations] naming them
        by their index in the script's KEYS (from 1, after the `offset_keys` offset keys)."""
        keys, dumps = self.keys, orjson.dumps
        write_keys: list[str] = []
        ops: list[list[Any]] = []
        n = offset_keys
        for order_id, view in plan.views.items():
            cleared, touched = view.cleared, view.touched
            if not cleared and (view.meta is None or not touched):
                continue
            write_keys.append(keys.order(order_id))
            n += 1
            if cleared:
                ops.append(["D", n])
            if view.meta is None or not touched:
                continue
            # as msgpack str: Redis's cmsgpack reads no bin type
            fields: list[str] = []
            for name in touched:
                if name == META:
                    fields += (META, dumps(view.meta).decode())
                else:
                    fields += (CASE + name, dumps(view.cases[name]).decode())
            ops.append(["H", n, fields])
        shared: dict[str, int] = {}  # merchant and day keys, named by several counts
        checks: list[int | str] = []
        for count, times in plan.counts.items():
            for key, kind in (
                (keys.merchant(count.merchant_id), "hash"),
                (keys.day(count.kind, count.day), "zset"),
            ):
                if key not in shared:
                    write_keys.append(key)
                    n += 1
                    shared[key] = n
                    checks += (n, kind)
            ops.append(
                ["I", shared[keys.merchant(count.merchant_id)], f"{count.kind}:{count.day}", times]
            )
            ops.append(["Z", shared[keys.day(count.kind, count.day)], count.merchant_id, times])
        return write_keys, [checks, ops]

    # ------------------------------------------------------------------ reading

    async def ping(self) -> None:
        try:
            await self.client.ping()
        except RedisError as exc:
            raise _wrap(exc) from exc

    async def order(self, order_id: str) -> OrderView | None:
        """The order with all its cases; None if unknown."""
        try:
            fields = await self.client.hgetall(self.keys.order(order_id))
        except RedisError as exc:
            raise _wrap(exc) from exc
        view = _view(order_id, _fields(fields))
        return None if view.meta is None else view

    async def case(self, order_id: str, case_id: str) -> OrderView | None:
        """The order with just one case loaded (absent from `cases` if unknown); None if the
        order is unknown."""
        names = [META, CASE + case_id]
        try:
            values = await self.client.hmget(self.keys.order(order_id), names)
        except RedisError as exc:
            raise _wrap(exc) from exc
        view = _view(order_id, dict(zip(names, values, strict=True)))
        return None if view.meta is None else view

    async def merchant_window(self, merchant_id: str, days: Sequence[str]) -> WindowCounts | None:
        """The merchant's counts over `days`; None for a merchant never counted."""
        fields = [f"{PAID}:{d}" for d in days] + [f"{REFUNDED}:{d}" for d in days]
        key = self.keys.merchant(merchant_id)
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.exists(key)
                pipe.hmget(key, fields)
                exists, values = await pipe.execute()
        except RedisError as exc:
            raise _wrap(exc) from exc
        if not exists:
            return None
        numbers = [0 if v is None else int(v) for v in values]
        n = len(days)
        return WindowCounts(merchant_id, sum(numbers[:n]), sum(numbers[n:]))

    async def candidates(self, days: Sequence[str], min_paid: int) -> list[WindowCounts]:
        """Every merchant with at least `min_paid` paid orders over `days` (one read-only
        script over the days' sorted sets)."""
        keys = [self.keys.day(PAID, d) for d in days] + [self.keys.day(REFUNDED, d) for d in days]
        try:
            flat: list[bytes] = await self._candidates(keys=keys, args=[min_paid])
        except RedisError as exc:
            raise _wrap(exc) from exc
        return [
            WindowCounts(flat[i].decode(), int(float(flat[i + 1])), int(float(flat[i + 2])))
            for i in range(0, len(flat), 3)
        ]

    # ------------------------------------------------------------------ tests and tools

    async def dump(self) -> Snapshot:
        """Everything under the prefix, as `Projection.snapshot()` shows it. Also checks that
        the days' sorted sets hold exactly the merchants' daily counts (AssertionError)."""
        prefix = self.keys.prefix
        orders: dict[str, dict[str, Any]] = {}
        counts: dict[str, dict[str, dict[str, int]]] = {PAID: {}, REFUNDED: {}}
        by_day: dict[str, dict[str, dict[str, int]]] = {PAID: {}, REFUNDED: {}}
        offsets: dict[int, int] = {}
        topic_offsets = f"{prefix}offset:{self.topic}:"
        pattern = _glob_escape(prefix) + "*"
        async for raw_key in self.client.scan_iter(match=pattern, count=1000):
            key = _str(raw_key)
            rest = key[len(prefix) :]
            if rest.startswith("order:"):
                fields = await self.client.hgetall(key)
                view = _view(rest[6:], _fields(fields))
                orders[view.order_id] = {"meta": view.meta, "cases": view.cases}
            elif rest.startswith("merchant:"):
                for field, value in (await self.client.hgetall(key)).items():
                    kind, day = _str(field).split(":", 1)
                    counts[kind].setdefault(rest[9:], {})[day] = int(value)
            elif key.startswith(topic_offsets):
                offsets[int(key[len(topic_offsets) :])] = int(await self.client.get(key) or -1)
            else:
                kind, day = rest.split(":", 1)
                members: Any = await self.client.zrange(key, 0, -1, withscores=True)
                by_day[kind][day] = {_str(m): int(s) for m, s in members}
        snapshot = Snapshot(orders, counts, offsets)
        expected = snapshot.by_day()
        for kind in (PAID, REFUNDED):
            assert by_day[kind] == expected.get(kind, {}), f"{kind} sorted sets differ"
        return snapshot

    async def delete_all(self) -> int:
        """Delete every key under the prefix (tests, benchmarks); returns how many."""
        deleted = 0
        pattern = _glob_escape(self.keys.prefix) + "*"
        batch: list[bytes] = []
        async for key in self.client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += await self.client.unlink(*batch)
                batch = []
        if batch:
            deleted += await self.client.unlink(*batch)
        return deleted


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
