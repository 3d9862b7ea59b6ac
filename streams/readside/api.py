"""`aftersale api`: the read side over HTTP (aiohttp), from Redis only.

    GET /orders/{order_id}                          the order, its cases and their deadlines
    GET /orders/{order_id}/cases/{case_id}          one case
    GET /merchants/{merchant_id}/refund-rate        ?window=30d&end=YYYY-MM-DD
    GET /merchants/top-refund-rate                  ?window=30d&end=YYYY-MM-DD&limit=10
    GET /healthz                                    alive (answers without Redis)
    GET /readyz                                     Redis answers

Described by `deploy/openapi.yaml`. A window is `<N>d` (1 to AFTERSALE_RATE_MAX_WINDOW_DAYS,
default 30d) of whole UTC business days ending with `end` (default: today, UTC). Errors are
JSON `{"error": code, "detail": text}`: 400 `bad_parameter`, 404 `order_not_found` /
`case_not_found` / `merchant_not_found` / `not_found`, 405 `method_not_allowed`, 503
`redis_unavailable`, 500 `internal`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any, Final, Protocol

import orjson
from aiohttp import web

from streams.errors import ConfigError
from streams.live.settings import Settings
from streams.readside.projection import (
    MAX_ID_CHARS,
    OrderView,
    WindowCounts,
    rank,
    window_days,
)
from streams.readside.redis_store import (
    RedisStore,
    StoreRefused,
    StoreUnavailable,
    admitted,
    connect,
)
from streams.readside.settings import ReadSettings, key_prefix, status_topic

log = logging.getLogger("aftersale.api")

DEFAULT_WINDOW: Final = "30d"
DEFAULT_LIMIT: Final = 10
MAX_LIMIT: Final = 100
_WINDOW = re.compile(r"([0-9]{1,6})d\Z")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
_LIMIT = re.compile(r"[0-9]{1,6}\Z")


class ReadStore(Protocol):
    """What the API reads (`RedisStore`; a projection in memory for tests). Every method may
    raise StoreUnavailable."""

    async def ping(self) -> None: ...

    async def order(self, order_id: str) -> OrderView | None: ...

    async def case(self, order_id: str, case_id: str) -> OrderView | None: ...

    async def merchant_window(
        self, merchant_id: str, days: Sequence[str]
    ) -> WindowCounts | None: ...

    async def candidates(self, days: Sequence[str], min_paid: int) -> list[WindowCounts]: ...


STORE: Final = web.AppKey[ReadStore]("store")
SETTINGS: Final = web.AppKey[ReadSettings]("settings")
TODAY: Final = web.AppKey[Callable[[], date]]("today")


class BadParameter(Exception):
    """A path or query parameter the API refuses (400)."""


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def _error(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> web.Response:
    return _json(status, {"error": code, "detail": detail}, headers)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except BadParameter as exc:
        return _error(400, "bad_parameter", str(exc))
    except (StoreUnavailable, StoreRefused) as exc:
        log.warning("%s %s: %s", request.method, request.path, exc)
        return _error(
            503, "redis_unavailable", "the read side's Redis is not answering; try again",
            {"Retry-After": "1"},
        )  # fmt: skip
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        allow = exc.headers.get("Allow")
        return _error(
            exc.status,
            _HTTP_CODES.get(exc.status, "http_error"),
            exc.reason,
            None if allow is None else {"Allow": allow},
        )
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return _error(500, "internal", "unexpected error (logged)")


def _identifier(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not 1 <= len(value) <= MAX_ID_CHARS:
        raise BadParameter(f"{name} must be 1 to {MAX_ID_CHARS} characters")
    return value


def _window(request: web.Request) -> tuple[str, int, date, list[str]]:
    """The window's text, its length in days, its last day and its days."""
    settings = request.app[SETTINGS]
    longest = settings.rate_max_window_days
    text = request.query.get("window", DEFAULT_WINDOW)
    match = _WINDOW.match(text)
    if match is None or not 1 <= int(match.group(1)) <= longest:
        raise BadParameter(f"window must be 1d to {longest}d (whole days), not {text[:40]!r}")
    days = int(match.group(1))
    raw_end = request.query.get("end")
    if raw_end is None:
        end = request.app[TODAY]()
    else:
        try:
            if _DAY.match(raw_end) is None:
                raise ValueError
            end = date.fromisoformat(raw_end)
        except ValueError:
            raise BadParameter(f"end must be a day, YYYY-MM-DD, not {raw_end[:40]!r}") from None
    try:
        listed = window_days(end, days)
    except OverflowError:
        raise BadParameter("the window would start before year 1") from None
    return f"{days}d", days, end, listed


def _rate(counts: WindowCounts) -> dict[str, Any]:
    return {
        "paid_orders": counts.paid_orders,
        "refunded_orders": counts.refunded_orders,
        "refund_rate": counts.refund_rate,
    }


async def get_order(request: web.Request) -> web.Response:
    order_id = _identifier(request, "order_id")
    view = await request.app[STORE].order(order_id)
    if view is None:
        return _error(404, "order_not_found", "no such order in the read side")
    return _json(200, view.document())


async def get_case(request: web.Request) -> web.Response:
    order_id = _identifier(request, "order_id")
    case_id = _identifier(request, "case_id")
    view = await request.app[STORE].case(order_id, case_id)
    if view is None:
        return _error(404, "order_not_found", "no such order in the read side")
    case = view.cases.get(case_id)
    if case is None:
        return _error(404, "case_not_found", "the order has no such case")
    assert view.meta is not None
    return _json(200, {"order_id": order_id, "merchant_id": view.meta["merchant_id"], **case})


async def get_refund_rate(request: web.Request) -> web.Response:
    merchant_id = _identifier(request, "merchant_id")
    window, _, end, days = _window(request)
    counts = await request.app[STORE].merchant_window(merchant_id, days)
    if counts is None:
        return _error(404, "merchant_not_found", "no paid or refunded order of this merchant")
    min_paid = request.app[SETTINGS].rate_min_paid
    return _json(
        200,
        {
            "merchant_id": merchant_id,
            "window": window,
            "from": days[0],
            "to": end.isoformat(),
            **_rate(counts),
            "min_paid_orders": min_paid,
            "ranked": counts.paid_orders >= min_paid,
        },
    )


async def get_top_refund_rate(request: web.Request) -> web.Response:
    window, _, end, days = _window(request)
    raw = request.query.get("limit", str(DEFAULT_LIMIT))
    if _LIMIT.match(raw) is None or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadParameter(f"limit must be a whole number from 1 to {MAX_LIMIT}, not {raw[:40]!r}")
    limit = int(raw)
    min_paid = request.app[SETTINGS].rate_min_paid
    ranked = rank(await request.app[STORE].candidates(days, min_paid), min_paid, limit)
    return _json(
        200,
        {
            "window": window,
            "from": days[0],
            "to": end.isoformat(),
            "min_paid_orders": min_paid,
            "limit": limit,
            "merchants": [
                {"rank": n, "merchant_id": c.merchant_id, **_rate(c)}
                for n, c in enumerate(ranked, 1)
            ],
        },
    )


async def get_healthz(request: web.Request) -> web.Response:
    return _json(200, {"status": "alive"})


async def get_readyz(request: web.Request) -> web.Response:
    await request.app[STORE].ping()
    return _json(200, {"status": "ready"})


#: Every route: (path, handler). deploy/openapi.yaml describes exactly these (a test checks).
ROUTES: Final = (
    ("/orders/{order_id}", get_order),
    ("/orders/{order_id}/cases/{case_id}", get_case),
    ("/merchants/top-refund-rate", get_top_refund_rate),
    ("/merchants/{merchant_id}/refund-rate", get_refund_rate),
    ("/healthz", get_healthz),
    ("/readyz", get_readyz),
)


def _utc_today() -> date:
    return datetime.now(UTC).date()


def build_app(
    store: ReadStore, settings: ReadSettings, today: Callable[[], date] = _utc_today
) -> web.Application:
    """The API over `store`; `today` gives the default end of a window."""
    app = web.Application(middlewares=[_errors])
    app[STORE] = store
    app[SETTINGS] = settings
    app[TODAY] = today
    for path, handler in ROUTES:
        app.router.add_get(path, handler)
    return app


def redis_app(worker: Settings, read: ReadSettings) -> web.Application:
    """The API over the read side's Redis (its client opened and closed with the app)."""
    client = connect(read)
    app = build_app(RedisStore(client, key_prefix(worker), status_topic(worker)), read)

    async def redis_client(app: web.Application) -> AsyncIterator[None]:
        yield
        await client.aclose()

    app.cleanup_ctx.append(redis_client)
    return app


async def _admitted(worker: Settings, read: ReadSettings) -> bool:
    """Whether Redis answers now (refusing this client raises StoreRefused: exit 2)."""
    client = connect(read)
    try:
        return await admitted(
            RedisStore(client, key_prefix(worker), status_topic(worker)), read.redis_url.redacted
        )
    finally:
        await client.aclose()


def run(args: argparse.Namespace) -> int:
    """The `aftersale api` command: serve until SIGTERM or SIGINT."""
    worker = Settings.from_env()
    read = ReadSettings.from_env()
    logging.basicConfig(
        level=args.loglevel.upper(), format="[%(asctime)s] [%(levelname)s] %(name)s: %(message)s"
    )
    log.info(
        "read API on http://%s:%d (Redis %s, keys %s*)",
        read.api_bind,
        read.api_port,
        read.redis_url.redacted,
        key_prefix(worker),
    )
    if not asyncio.run(_admitted(worker, read)):
        log.warning(
            "Redis at %s is not answering yet: /readyz answers 503 until it does",
            read.redis_url.redacted,
        )
    try:
        web.run_app(
            redis_app(worker, read),
            host=read.api_bind,
            port=read.api_port,
            print=None,
            access_log=log if args.loglevel == "debug" else None,
        )
    except OSError as exc:  # the port is taken, the address is not this host's, ...
        raise ConfigError(f"cannot listen on {read.api_bind}:{read.api_port}: {exc}") from None
    return 0
