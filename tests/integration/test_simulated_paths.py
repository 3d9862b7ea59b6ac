"""The worker and replay agree on a simulated stream that takes every after-sale path: the
contract's, and the refund before shipment, the merchant's own refund, the evidence request,
exchange and repair, and the escalation window after a rejection (`simulate --every-path`),
produced live, each record when the wall clock reaches its `occurred_at`."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

from streams.contract.times import is_time, parse_time
from streams.rules.policy import RULES, policy_from_mapping
from streams.tools.simulate import Mix, generate, policy_yaml
from tests.integration.test_worker import replays_answers
from tests.integration.worker_harness import Env, Feeder, WorkerProcess, replay_of, seconds

#: Every rule, in seconds; the simulated story aims its answers at these deadlines.
POLICY = policy_from_mapping(
    {
        "deadlines": {
            "merchant_review": 3,
            "buyer_return": 3,
            "merchant_receipt": 3,
            "unshipped_review": 2,
            "buyer_evidence": 2,
            "merchant_reship": 2,
            "merchant_repair": 3,
            "buyer_escalation": 2,
        },
        "reminders": {"merchant_review": [1], "buyer_return": [1], "buyer_evidence": [0.5]},
    }
)
#: 150 orders paid over 8 s, the story's hours compressed 72,000-fold; seed 5 is one where
#: every rule lapses at least once (the story is deterministic: its times are relative).
ORDERS, SEED, SPAN, SCALE = 150, 5, seconds(8), 72_000.0


async def test_the_worker_gives_replays_answers_on_a_stream_of_every_path(
    env: Env, workers: Callable[..., WorkerProcess]
) -> None:
    env.policy.write_text(policy_yaml(POLICY))
    worker = workers()
    worker.start()
    await worker.wait_ready()
    start = (datetime.now(UTC) + seconds(3)).replace(microsecond=0)
    mix = Mix(bad_rate=0.01, retry_rate=0.02, every_path=True)
    lines = list(generate(ORDERS, SEED, start, SPAN, POLICY, SCALE, mix))
    async with Feeder(env.prefix) as feed:
        for line in lines:
            body = _fields(line)
            when = parse_time(body["occurred_at"]) if "occurred_at" in body else None
            if when is not None:
                await asyncio.sleep(max(0.0, (when - datetime.now(UTC)).total_seconds()))
            await feed.raw(body["type"], line, body["order_id"].encode())
    until = datetime.now(UTC) + seconds(12)
    expected = replay_of(feed.sent, env.policy, env.folder, until)
    live = await replays_answers(env.prefix, expected, worker)
    types = Counter(_fields(line)["type"] for line in lines)
    for added in (
        "aftersale.evidence_requested",
        "aftersale.evidence_provided",
        "aftersale.reshipped",
        "aftersale.merchant_refunded",
        "aftersale.escalated",
    ):
        assert types[added] > 0, added
    assert {a["rule"] for a in live["aftersale-actions"]} == set(RULES)
    assert worker.errors() == []


def _fields(line: bytes) -> dict[str, str]:
    """type, order_id and occurred_at (when it is a time) of a simulated line, also of an
    intentionally bad one (cut short, a field missing or not a time)."""
    found = {
        name: match.group(1).decode()
        for name in ("type", "order_id", "occurred_at")
        if (match := re.search(rb'"' + name.encode() + rb'":"([^"]*)"', line)) is not None
    }
    if "occurred_at" in found and not is_time(found["occurred_at"]):
        del found["occurred_at"]
    return found
