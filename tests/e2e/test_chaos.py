"""The fault campaign's short form (issue 20), run on every CI run; `make chaos` runs the long one.

Two workers and a simulated stream with short deadlines on the campaign's own broker, while the
driver kills a worker (restarted at once, and later), pauses one (SIGSTOP/SIGCONT) and kills
the broker (restarted), with a third of the orders produced through librdkafka's CRC32
partitioner. The committed outputs must be replay's over the input in the order the broker
appended it: no output lost, duplicated or early, every difference explained by the contract's
race (a record written after the deadline instant it was stamped before).
"""

from __future__ import annotations

import os

from tests.chaos.campaign import (
    BROKER,
    KILL_LATER,
    KILL_NOW,
    PAUSE,
    Config,
    run_campaign,
    summary,
)

FAULTS = 5  # the first four cover every kind
KINDS = (KILL_NOW, KILL_LATER, PAUSE, BROKER)
SEED = int(os.environ.get("CHAOS_SEED", "20"))


async def test_a_short_fault_campaign_loses_duplicates_and_hurries_nothing() -> None:
    # The run's folder (.stack-chaos/runs/<prefix>: worker logs, input, replay, summary) is
    # deleted when the campaign passes and kept when it fails.
    config = Config(
        faults=FAULTS,
        workers=2,
        seed=SEED,
        kinds=KINDS,
        stack_down=True,  # the campaign's own broker: stopped after
        span_s=30.0,  # orders paid over 30 s; the stream and its deadlines run about 90 s more
        orders_per_s=4.0,
        say=print,
    )
    result = await run_campaign(config)
    report = summary(result)
    print(report)
    assert result.passed, report
    assert len(result.faults) >= FAULTS
    assert {fault.kind for fault in result.faults} == set(KINDS), report
    assert all(fault.survived for fault in result.faults), report
    verdict = result.verdict
    assert verdict is not None
    assert verdict.expected.actions, "the stream started no deadline"
    assert verdict.unexplained == [], report
    assert verdict.duplicated == {}, report
    assert verdict.early == [], report
    assert result.misplaced > 0, "no record came through librdkafka's partitioner"
