"""The README's first command (`make run`, i.e. `deploy/local/demo`) does its job and cleans up."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from tests.integration.endpoints import BOOTSTRAP
from tests.integration.worker_harness import free_port

DEMO = Path(__file__).resolve().parents[2] / "deploy" / "local" / "demo"
SECONDS = "60"  # merchant_review is 12 s at the demo's scale: auto-actions come within a minute


async def topics_named(prefix: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        return [t for t in await admin.list_topics() if t.startswith(prefix)]
    finally:
        await admin.close()


def test_demo_shows_auto_actions_and_the_refund_rate_then_deletes_its_topics_and_state() -> None:
    metrics_port, api_port = free_port(), free_port()
    env = dict(
        os.environ,
        KAFKA_BOOTSTRAP=BOOTSTRAP,
        DEMO_METRICS_PORT=str(metrics_port),
        DEMO_API_PORT=str(api_port),
    )
    env.pop("DEMO_KEEP", None)
    done = subprocess.run(
        [str(DEMO), SECONDS], env=env, capture_output=True, text=True, timeout=240, check=False
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert re.search(r"^\S+  auto_(approve|refund|close) ", out, re.MULTILINE), out[-3000:]
    assert "dead letter" in out  # the simulated stream carries bad records too
    assert f"metrics at http://127.0.0.1:{metrics_port}/metrics" in out
    assert f"read API at http://127.0.0.1:{api_port}" in out
    # the refund rate while it runs (every 15 s) and at the end, from the worker's /metrics,
    # and the read API's top merchant (the projector fed Redis)
    rates = re.findall(r"refund rate (\d+\.\d)%: (\d+) of (\d+) paid orders refunded", out)
    assert len(rates) >= 3, out[-3000:]
    rate, refunded, paid = rates[-1]
    assert int(paid) > 0
    assert 0 < int(refunded) <= int(paid)
    assert abs(float(rate) - 100 * int(refunded) / int(paid)) <= 0.05 + 1e-9
    assert re.search(r"top merchant \S+: \d+\.\d% \(\d+ of \d+, read API\)", out), out[-3000:]
    deleted = re.search(
        r"demo: deleted (\d+) topics (demo-\d+-)\*, (\d+) Redis keys and (\S+)", out
    )
    assert deleted, out[-3000:]
    assert int(deleted[1]) >= 8  # five contract topics, ticks, status and the changelog
    assert int(deleted[3]) > 0
    assert not Path(deleted[4]).exists()
    assert asyncio.run(topics_named(deleted[2])) == []
