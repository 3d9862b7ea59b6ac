"""The README's first command (`make run`, i.e. `deploy/local/demo`) does its job and cleans up."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from tests.integration.endpoints import BOOTSTRAP

DEMO = Path(__file__).resolve().parents[2] / "deploy" / "local" / "demo"
SECONDS = "60"  # merchant_review is 12 s at the demo's scale: auto-actions come within a minute


async def topics_named(prefix: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        return [t for t in await admin.list_topics() if t.startswith(prefix)]
    finally:
        await admin.close()


def test_demo_shows_auto_actions_then_deletes_its_topics_and_state() -> None:
    env = dict(os.environ, KAFKA_BOOTSTRAP=BOOTSTRAP)
    env.pop("DEMO_KEEP", None)
    done = subprocess.run(
        [str(DEMO), SECONDS], env=env, capture_output=True, text=True, timeout=240, check=False
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert re.search(r"^\S+  auto_(approve|refund|close) ", out, re.MULTILINE), out[-3000:]
    assert "dead letter" in out  # the simulated stream carries bad records too
    deleted = re.search(r"demo: deleted (\d+) topics (demo-\d+-)\* and (\S+)", out)
    assert deleted, out[-3000:]
    assert int(deleted[1]) >= 7  # five contract topics, the ticks and the state changelog
    assert not Path(deleted[3]).exists()
    assert asyncio.run(topics_named(deleted[2])) == []
