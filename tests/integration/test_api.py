"""`aftersale api` as a process over a real Redis: what it answers is the projection's, every
answer is valid against deploy/openapi.yaml, and a Redis that goes away is a 503 (and back)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import redis.asyncio as aioredis

from streams.readside.projection import Delivered, Projection, decode_record, rank, window_days
from streams.readside.redis_store import RedisStore
from tests.integration.endpoints import REDIS_URL
from tests.integration.test_readside import RedisServer, status_feed
from tests.integration.worker_harness import free_port, wait_for
from tests.unit.readside.openapi import check_response

ORDER = "/orders/{order_id}"
CASE = "/orders/{order_id}/cases/{case_id}"
RATE = "/merchants/{merchant_id}/refund-rate"
TOP = "/merchants/top-refund-rate"


@dataclass
class ApiProcess:
    app_id: str
    redis_url: str
    log: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self) -> None:
        self.port = free_port()
        env = dict(os.environ)
        env.update(
            AFTERSALE_APP_ID=self.app_id,
            AFTERSALE_REDIS_URL=self.redis_url,
            AFTERSALE_API_PORT=str(self.port),
            AFTERSALE_REDIS_TIMEOUT="1",
            AFTERSALE_RATE_MIN_PAID="5",
        )
        env.update(self.extra_env)
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streams.tools.cli", "api"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def start(self, session: aiohttp.ClientSession) -> None:
        """Start it and wait until it answers /healthz."""
        self.spawn()

        async def alive() -> bool:
            try:
                async with session.get(self.base + "/healthz") as response:
                    return response.status == 200
            except aiohttp.ClientError:
                return False

        await wait_for(alive, lambda: f"the API to answer\n{self.log.read_text()}", 30.0)

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def apis() -> Iterator[list[ApiProcess]]:
    started: list[ApiProcess] = []
    yield started
    for api in started:
        if api.process is not None and api.process.poll() is None:
            api.process.kill()
            api.process.wait(10)


async def get(
    session: aiohttp.ClientSession, api: ApiProcess, url: str, template: str, status: int
) -> Any:
    async with session.get(api.base + url) as response:
        body = await response.json()
        assert response.status == status, (url, body)
        assert response.content_type == "application/json"
    check_response(template, status, body)
    return body


async def test_the_api_answers_the_projection_from_redis(
    unique: str, tmp_path: Path, session: aiohttp.ClientSession, apis: list[ApiProcess]
) -> None:
    feed = [decode_record(line) for line in status_feed(tmp_path, orders=300, seed=23)]
    deliveries = [Delivered(0, n, record) for n, record in enumerate(feed)]
    projection = Projection()
    for d in deliveries:
        assert d.record is not None
        projection.apply(d.record, d.partition, d.offset)
    client = aioredis.from_url(REDIS_URL)
    store = RedisStore(client, f"{unique}:", f"{unique}-status")
    try:
        for start in range(0, len(deliveries), 500):
            await store.apply_batch(deliveries[start : start + 500], {})
        api = ApiProcess(unique, REDIS_URL, tmp_path / "api.log")
        apis.append(api)
        await api.start(session)
        assert await get(session, api, "/readyz", "/readyz", 200) == {"status": "ready"}

        assert projection.orders, "the feed leaves some orders"
        for order_id, view in projection.orders.items():
            body = await get(session, api, f"/orders/{quote(order_id, safe='')}", ORDER, 200)
            assert body == view.document()
            for case_id, case in view.cases.items():
                url = f"/orders/{quote(order_id, safe='')}/cases/{quote(case_id, safe='')}"
                body = await get(session, api, url, CASE, 200)
                assert body == {"order_id": order_id, "merchant_id": body["merchant_id"], **case}
        forgotten = {r.order_id for r in feed if r.order_id not in projection.orders}
        assert forgotten, "the feed forgets some orders"
        for order_id in sorted(forgotten)[:5]:
            body = await get(session, api, f"/orders/{order_id}", ORDER, 404)
            assert body["error"] == "order_not_found"
        some_order = next(iter(projection.orders))
        body = await get(session, api, f"/orders/{some_order}/cases/nope", CASE, 404)
        assert body["error"] == "case_not_found"

        merchants = sorted(projection.counts["paid"])
        assert len(merchants) >= 3
        for end in (date(2026, 11, 1), date(2026, 11, 3), date(2026, 11, 30)):
            for window in (1, 7, 30):
                days = window_days(end, window)
                query = f"window={window}d&end={end.isoformat()}"
                for merchant in merchants:
                    body = await get(
                        session, api, f"/merchants/{merchant}/refund-rate?{query}", RATE, 200
                    )
                    counts = projection.merchant_window(merchant, days)
                    assert counts is not None
                    assert (body["paid_orders"], body["refunded_orders"]) == counts[1:]
                    assert body["refund_rate"] == counts.refund_rate
                    assert body["ranked"] is (counts.paid_orders >= 5)
                body = await get(session, api, f"/merchants/top-refund-rate?{query}&limit=3",
                                 TOP, 200)  # fmt: skip
                ranked = rank(projection.candidates(days, 5), 5, 3)
                assert [
                    (m["merchant_id"], m["paid_orders"], m["refunded_orders"])
                    for m in body["merchants"]
                ] == [tuple(c) for c in ranked]
        assert (await get(session, api, f"{TOP}?limit=3", TOP, 200))["limit"] == 3
        body = await get(session, api, "/merchants/m-unknown/refund-rate", RATE, 404)
        assert body["error"] == "merchant_not_found"
        for url, template in [
            ("/merchants/m-0/refund-rate?window=91d", RATE),
            ("/merchants/m-0/refund-rate?end=2026-02-30", RATE),
            ("/merchants/top-refund-rate?limit=0", TOP),
            ("/merchants/top-refund-rate?window=week", TOP),
            (f"/orders/{'o' * 257}", ORDER),
        ]:
            assert (await get(session, api, url, template, 400))["error"] == "bad_parameter"
        assert api.stop() == 0
    finally:
        await store.delete_all()
        await client.aclose()


async def test_redis_down_is_503_and_the_api_recovers(
    unique: str, tmp_path: Path, session: aiohttp.ClientSession, apis: list[ApiProcess]
) -> None:
    server = RedisServer(tmp_path / "redis")
    await server.start()
    try:
        client = aioredis.from_url(server.url)
        store = RedisStore(client, f"{unique}:", f"{unique}-status")
        records = [
            b'{"type":"order_paid","order_id":"o-1","merchant_id":"m-1",'
            b'"at":"2026-11-01T00:00:00Z","amount":1}'
        ]
        await store.apply_batch([Delivered(0, 0, decode_record(records[0]))], {})
        await client.aclose()
        api = ApiProcess(unique, server.url, tmp_path / "api.log")
        apis.append(api)
        await api.start(session)
        assert (await get(session, api, "/orders/o-1", ORDER, 200))["paid"] is True

        server.kill()
        for url, template in [
            ("/orders/o-1", ORDER),
            ("/orders/o-1/cases/c-1", CASE),
            ("/merchants/m-1/refund-rate?end=2026-11-01", RATE),
            ("/merchants/top-refund-rate", TOP),
            ("/readyz", "/readyz"),
        ]:
            body = await get(session, api, url, template, 503)
            assert body["error"] == "redis_unavailable"
        assert await get(session, api, "/healthz", "/healthz", 200) == {"status": "alive"}

        await server.start()  # its AOF brings the order back
        assert await get(session, api, "/readyz", "/readyz", 200) == {"status": "ready"}
        body = await get(session, api, "/merchants/m-1/refund-rate?end=2026-11-01", RATE, 200)
        assert (body["paid_orders"], body["refunded_orders"]) == (1, 0)
        assert api.stop() == 0
        assert "read API on http://127.0.0.1:" in api.log.read_text()
    finally:
        server.stop()


async def test_a_password_in_the_redis_url_is_used_and_never_logged(
    unique: str, tmp_path: Path, session: aiohttp.ClientSession, apis: list[ApiProcess]
) -> None:
    server = RedisServer(tmp_path / "redis", password="s3cret-pw")
    await server.start()
    try:
        api = ApiProcess(unique, server.url, tmp_path / "api.log")
        apis.append(api)
        await api.start(session)
        assert await get(session, api, "/readyz", "/readyz", 200) == {"status": "ready"}
        assert (await get(session, api, "/orders/o-1", ORDER, 404))["error"] == "order_not_found"
        assert api.stop() == 0
        log = api.log.read_text()
        assert f"redis://:****@127.0.0.1:{server.port}/0" in log
        assert "s3cret-pw" not in log
    finally:
        server.stop()
