"""The read API's handlers over a store in memory; every answer checked against
deploy/openapi.yaml."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import date
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from jsonschema import ValidationError
from openapi_spec_validator import validate

from streams.readside.api import ROUTES, build_app
from streams.readside.projection import Projection, decode_record
from streams.readside.settings import ReadSettings
from tests.unit.readside.feeds import MemoryStore
from tests.unit.readside.openapi import check_response, document

TODAY = date(2026, 11, 10)


def _records() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    # m-1: 20 paid orders on 2026-11-01..02, 5 refunded on 2026-11-05; m-2: 25 paid, 10 refunded
    for n in range(20):
        out.append({"type": "order_paid", "order_id": f"o-1-{n}", "merchant_id": "m-1",
                    "at": f"2026-11-0{1 + n % 2}T10:00:00Z", "amount": 100})  # fmt: skip
    for n in range(25):
        out.append({"type": "order_paid", "order_id": f"o-2-{n}", "merchant_id": "m-2",
                    "at": "2026-11-03T10:00:00Z", "amount": 100})  # fmt: skip
    for merchant, refunds in (("m-1", 5), ("m-2", 10)):
        for n in range(refunds):
            out.append(_case(f"o-{merchant[-1]}-{n}", "aftersale.refunded", "closed",
                             outcome="refunded", refund_cause="merchant", first_refund=True,
                             at="2026-11-05T10:00:00Z"))  # fmt: skip
    # m-3: too few paid orders to be ranked
    out.append({"type": "order_paid", "order_id": "o-3-0", "merchant_id": "m-3",
                "at": "2026-11-05T10:00:00Z", "amount": 100})  # fmt: skip
    out.append(_case("o-7", "aftersale.requested", "review", case_id="c-9", rule="merchant_review",
                     deadline_at="2026-11-07T10:00:00Z"))  # fmt: skip
    out.append(_case("o-7", "aftersale.escalated", "escalated", case_id="c-9", paused=True,
                     remaining_s=3600.5))  # fmt: skip
    out.append(_case("o-8/x", "aftersale.requested", "review", case_id="c/1"))
    return out


def _case(order_id: str, what: str, phase: str, **fields: Any) -> dict[str, Any]:
    body = {
        "type": "case", "order_id": order_id, "merchant_id": "m-" + order_id[2],
        "case_id": f"c-{order_id}", "kind": "refund_only", "reason": "quality", "amount": 100,
        "currency": "CNY", "what": what, "at": "2026-11-05T09:00:00Z", "phase": phase,
        "rule": None, "deadline_at": None, "paused": False, "remaining_s": None, "outcome": None,
        "refund_cause": None, "first_refund": False, "fired_at": None,
    }  # fmt: skip
    body.update(fields)
    return body


@pytest.fixture
def projection() -> Projection:
    return Projection().apply_all(decode_record(orjson.dumps(r)) for r in _records())


@pytest.fixture
async def make_client(
    projection: Projection,
) -> AsyncIterator[Callable[..., Any]]:
    clients: list[TestClient[Any, Any]] = []

    async def make(down: bool = False, **env: str) -> TestClient[Any, Any]:
        settings = ReadSettings.from_env(env)
        app = build_app(MemoryStore(projection, down), settings, lambda: TODAY)
        client: TestClient[Any, Any] = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


async def get(client: TestClient[Any, Any], url: str, template: str, status: int) -> Any:
    """GET `url`: its status must be `status` and its JSON body valid for `template`."""
    response = await client.get(url)
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    check_response(template, status, body)
    return body


ORDER = "/orders/{order_id}"
CASE = "/orders/{order_id}/cases/{case_id}"
RATE = "/merchants/{merchant_id}/refund-rate"
TOP = "/merchants/top-refund-rate"


async def test_an_order_and_its_case(make_client: Callable[..., Any]) -> None:
    client = await make_client()
    order = await get(client, "/orders/o-7", ORDER, 200)
    assert order["merchant_id"] == "m-7"
    assert order["paid"] is False
    [case] = order["cases"]
    assert case["phase"] == "escalated"
    assert case["deadline"] == {
        "rule": "merchant_review", "deadline_at": None, "paused": True, "remaining_s": 3600.5,
    }  # fmt: skip
    one = await get(client, "/orders/o-7/cases/c-9", CASE, 200)
    assert one == {"order_id": "o-7", "merchant_id": "m-7", **case}
    paid = await get(client, "/orders/o-1-0", ORDER, 200)
    assert (paid["paid"], paid["refunded"], paid["amount"]) == (True, True, 100)
    # identifiers with a slash, percent-encoded
    slashed = await get(client, "/orders/o-8%2Fx/cases/c%2F1", CASE, 200)
    assert (slashed["order_id"], slashed["case_id"]) == ("o-8/x", "c/1")


async def test_unknown_orders_cases_merchants_and_paths_are_404(
    make_client: Callable[..., Any],
) -> None:
    client = await make_client()
    assert (await get(client, "/orders/nope", ORDER, 404))["error"] == "order_not_found"
    assert (await get(client, "/orders/nope/cases/c-9", CASE, 404))["error"] == "order_not_found"
    assert (await get(client, "/orders/o-7/cases/c-0", CASE, 404))["error"] == "case_not_found"
    body = await get(client, "/merchants/m-404/refund-rate", RATE, 404)
    assert body["error"] == "merchant_not_found"
    response = await client.get("/nowhere")
    assert response.status == 404
    assert (await response.json())["error"] == "not_found"
    response = await client.post("/healthz")
    assert response.status == 405
    assert (await response.json())["error"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


async def test_refund_rate_over_windows(make_client: Callable[..., Any]) -> None:
    client = await make_client()
    body = await get(client, "/merchants/m-1/refund-rate", RATE, 200)
    assert body == {
        "merchant_id": "m-1", "window": "30d", "from": "2026-10-12", "to": "2026-11-10",
        "paid_orders": 20, "refunded_orders": 5, "refund_rate": 0.25, "min_paid_orders": 20,
        "ranked": True,
    }  # fmt: skip
    body = await get(client, "/merchants/m-1/refund-rate?window=1d&end=2026-11-02", RATE, 200)
    assert (body["from"], body["to"], body["paid_orders"], body["refunded_orders"]) == (
        "2026-11-02",
        "2026-11-02",
        10,
        0,
    )
    assert body["ranked"] is False
    body = await get(client, "/merchants/m-1/refund-rate?window=3d&end=2026-11-07", RATE, 200)
    assert (body["paid_orders"], body["refunded_orders"], body["refund_rate"]) == (0, 5, None)


async def test_the_ranking(make_client: Callable[..., Any]) -> None:
    client = await make_client()
    body = await get(client, "/merchants/top-refund-rate?window=7d", TOP, 200)
    assert body["from"] == "2026-11-04"
    assert body["merchants"] == []  # nobody has 20 paid orders from 11-04 on
    body = await get(client, "/merchants/top-refund-rate", TOP, 200)
    assert [(m["rank"], m["merchant_id"], m["refund_rate"]) for m in body["merchants"]] == [
        (1, "m-2", 0.4),
        (2, "m-1", 0.25),
    ]
    body = await get(client, "/merchants/top-refund-rate?limit=1", TOP, 200)
    assert [m["merchant_id"] for m in body["merchants"]] == ["m-2"]
    lenient = await make_client(AFTERSALE_RATE_MIN_PAID="1")
    body = await get(lenient, "/merchants/top-refund-rate?limit=100", TOP, 200)
    assert [m["merchant_id"] for m in body["merchants"]] == ["m-2", "m-1", "m-3"]
    assert body["min_paid_orders"] == 1


@pytest.mark.parametrize(
    "query",
    [
        "window=0d",
        "window=91d",
        "window=30",
        "window=1w",
        "window=%EF%BC%913d",  # a fullwidth digit is not a digit here
        "end=2026-13-01",
        "end=20261101",
        "end=yesterday",
        "window=3d&end=0001-01-02",
    ],
)
async def test_bad_windows_are_400(make_client: Callable[..., Any], query: str) -> None:
    client = await make_client()
    body = await get(client, f"/merchants/m-1/refund-rate?{query}", RATE, 400)
    assert body["error"] == "bad_parameter"
    body = await get(client, f"/merchants/top-refund-rate?{query}", TOP, 400)
    assert body["error"] == "bad_parameter"


@pytest.mark.parametrize("limit", ["0", "101", "-1", "ten", "1.5", ""])
async def test_bad_limits_are_400(make_client: Callable[..., Any], limit: str) -> None:
    client = await make_client()
    body = await get(client, f"/merchants/top-refund-rate?limit={limit}", TOP, 400)
    assert body["error"] == "bad_parameter"


async def test_longer_windows_can_be_allowed(make_client: Callable[..., Any]) -> None:
    client = await make_client(AFTERSALE_RATE_MAX_WINDOW_DAYS="365")
    body = await get(client, "/merchants/m-2/refund-rate?window=365d", RATE, 200)
    assert body["paid_orders"] == 25


async def test_identifiers_longer_than_the_contract_allows_are_400(
    make_client: Callable[..., Any],
) -> None:
    client = await make_client()
    long = "x" * 257
    assert (await get(client, f"/orders/{long}", ORDER, 400))["error"] == "bad_parameter"
    assert (await get(client, f"/orders/o-7/cases/{long}", CASE, 400))["error"] == "bad_parameter"
    assert (await get(client, f"/merchants/{long}/refund-rate", RATE, 400))["error"] == (
        "bad_parameter"
    )
    assert (await get(client, f"/orders/{'x' * 256}", ORDER, 404))["error"] == "order_not_found"


async def test_redis_down_is_503_but_alive(make_client: Callable[..., Any]) -> None:
    client = await make_client(down=True)
    for url, template in [
        ("/orders/o-7", ORDER),
        ("/orders/o-7/cases/c-9", CASE),
        ("/merchants/m-1/refund-rate", RATE),
        ("/merchants/top-refund-rate", TOP),
        ("/readyz", "/readyz"),
    ]:
        body = await get(client, url, template, 503)
        assert body["error"] == "redis_unavailable"
        assert "ConnectionError" not in body["detail"]  # internals stay in the log
    assert await get(client, "/healthz", "/healthz", 200) == {"status": "alive"}
    up = await make_client()
    assert await get(up, "/readyz", "/readyz", 200) == {"status": "ready"}


def test_the_document_is_valid_openapi_and_describes_exactly_the_routes() -> None:
    doc = document()
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {path for path, _ in ROUTES}
    assert all(set(item) == {"get"} for item in doc["paths"].values())


@pytest.mark.parametrize(
    ("template", "status", "body"),
    [
        (ORDER, 200, {"order_id": "o"}),
        (CASE, 200, {"order_id": "o", "merchant_id": "m", "case_id": "c", "extra": 1}),
        (
            RATE,
            200,
            {
                "merchant_id": "m",
                "window": "30d",
                "from": "2026-11-31",
                "to": "x",
                "paid_orders": 1,
                "refunded_orders": 0,
                "refund_rate": 0.0,
                "min_paid_orders": 20,
                "ranked": False,
            },
        ),
        (
            TOP,
            200,
            {
                "window": "30d",
                "from": "2026-11-01",
                "to": "2026-11-30",
                "min_paid_orders": 20,
                "limit": 1,
                "merchants": [{"rank": 1}],
            },
        ),
        (ORDER, 404, {"error": "gone", "detail": "x"}),
    ],
)
def test_the_checker_refuses_what_the_document_does_not_allow(
    template: str, status: int, body: Any
) -> None:
    with pytest.raises(ValidationError):
        check_response(template, status, body)
