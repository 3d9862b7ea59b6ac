#!/usr/bin/env python3
"""Print the running refund rate of a local run, from the worker's /metrics and the read API.

Every INTERVAL seconds, one line: paid orders, refunded orders and the refund rate (as the
Prometheus rules define it: orders with a successful refund / paid orders), auto-actions, and
the merchant the read API ranks first by refund rate. The demo (`make run`) runs it beside
the worker.

    .venv/bin/python deploy/local/rates.py --metrics http://127.0.0.1:6066/metrics \\
        --api http://127.0.0.1:8080 --every 15
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from datetime import UTC, datetime, timedelta

import aiohttp
from prometheus_client.parser import text_string_to_metric_families


def totals(exposition: str) -> dict[str, float]:
    """Each counter family of the exposition summed over its label sets (`_total` samples)."""
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name.endswith("_total"):
                sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
    return sums


def rate_line(sums: dict[str, float]) -> str:
    paid = sums.get("aftersale_orders_paid_total", 0.0)
    refunded = sums.get("aftersale_refunds_total", 0.0)
    actions = sums.get("aftersale_auto_actions_total", 0.0)
    rate = f"{refunded / paid:.1%}" if paid else "n/a (no paid order yet)"
    return (
        f"refund rate {rate}: {refunded:.0f} of {paid:.0f} paid orders refunded; "
        f"{actions:.0f} auto-actions"
    )


async def top_merchant(session: aiohttp.ClientSession, api: str, end: str) -> str:
    url = f"{api}/merchants/top-refund-rate?window=30d&limit=1&end={end}"
    try:
        async with session.get(url) as response:
            body = await response.json()
    except (aiohttp.ClientError, ValueError) as exc:
        return f"read API: {exc.__class__.__name__}"
    merchants = body.get("merchants") if isinstance(body, dict) else None
    if response.status != 200 or not merchants:
        return "read API: no merchant above the minimum volume yet"
    top = merchants[0]
    return (
        f"top merchant {top['merchant_id']}: {top['refund_rate']:.1%} "
        f"({top['refunded_orders']} of {top['paid_orders']}, read API)"
    )


async def watch(metrics: str, api: str, every: float, days_ahead: int, once: bool) -> None:
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            if not once:
                await asyncio.sleep(every)
            try:
                async with session.get(metrics) as response:
                    line = rate_line(totals(await response.text()))
            except aiohttp.ClientError as exc:
                line = f"metrics: {exc.__class__.__name__} ({metrics})"
            # the demo's clock runs ahead of the wall clock: rank up to the last simulated day
            end = (datetime.now(UTC) + timedelta(days=days_ahead)).date().isoformat()
            print(f"  -- {line}; {await top_merchant(session, api, end)}", flush=True)
            if once:
                return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metrics", default="http://127.0.0.1:6066/metrics")
    parser.add_argument("--api", default="http://127.0.0.1:8080")
    parser.add_argument("--every", type=float, default=15.0, help="seconds between lines")
    parser.add_argument(
        "--days-ahead", type=int, default=0, help="end the ranking's window this many days ahead"
    )
    parser.add_argument("--once", action="store_true", help="print one line now and exit")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(watch(args.metrics, args.api, args.every, args.days_ahead, args.once))
    return 0


if __name__ == "__main__":
    sys.exit(main())
