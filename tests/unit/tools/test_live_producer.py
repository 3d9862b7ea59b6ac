"""Routing simulated records to topics, keys and send times for the live producer."""

from __future__ import annotations

from streams.contract.times import parse_time
from streams.tools.live_producer import route


def test_valid_records_go_to_their_topic_keyed_by_order_at_their_time() -> None:
    line = b'{"type":"order.paid","order_id":"o-1","occurred_at":"2026-11-01T18:00:00+08:00"}'
    assert route(line) == ("order-events", b"o-1", parse_time("2026-11-01T10:00:00Z"))
    line = b'{"type":"aftersale.approved","order_id":"o-2","occurred_at":"2026-11-01T10:00:00Z"}'
    assert route(line)[:2] == ("aftersale-events", b"o-2")


def test_bad_records_go_out_at_once_on_the_aftersale_topic() -> None:
    assert route(b"{truncated") == ("aftersale-events", None, None)
    assert route(b"[1, 2]") == ("aftersale-events", None, None)
    assert route(b'{"type": "order.paid", "order_id": 7, "occurred_at": "yesterday"}') == (
        "order-events",
        None,
        None,
    )
