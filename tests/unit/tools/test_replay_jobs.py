"""`aftersale replay --jobs N`: sharded by order, byte for byte the one-process output."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import zlib
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.errors import ShardError
from streams.rules.policy import Policy
from streams.tools import replay_jobs as replay_jobs_module
from streams.tools.cli import main
from streams.tools.replay import replay
from streams.tools.replay_jobs import replay_jobs, shard_of
from streams.tools.simulate import generate
from tests.unit.factories import T0, body
from tests.unit.strategies import Scenario, scenarios

FILES = ("actions.jsonl", "notifications.jsonl", "deadletter.jsonl", "status.jsonl")
SAMPLE = Path(__file__).resolve().parents[3] / "deploy" / "local" / "sample" / "events.jsonl"


def outputs(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in FILES}


def both(events: Path, out: Path, policy: Policy, jobs: int, until: datetime | None) -> None:
    """Replay `events` in one process (out/one) and in `jobs` (out/many); same bytes."""
    single = replay(events, out / "one", policy, until, status=True)
    sharded = replay_jobs(events, out / "many", policy, jobs, until, status=True)
    assert outputs(out / "many") == outputs(out / "one")
    assert sharded.as_dict() == single.as_dict()


@pytest.mark.parametrize("jobs", [2, 3, 5])
def test_a_simulated_stream_is_byte_identical_on_any_number_of_jobs(
    tmp_path: Path, jobs: int
) -> None:
    events = tmp_path / "in.jsonl"
    events.write_bytes(b"".join(line + b"\n" for line in generate(400, seed=11)))
    both(events, tmp_path, Policy(), jobs, datetime.fromisoformat("2027-01-01T00:00:00+00:00"))
    assert (tmp_path / "many" / "actions.jsonl").stat().st_size > 0


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_chunks_of_any_size_give_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    # A deadline often falls due in one chunk and fires in a later one, and a shard runs a
    # chunk behind what it reads.
    monkeypatch.setattr(replay_jobs_module, "CHUNK_LINES", chunk)
    events = tmp_path / "in.jsonl"
    events.write_bytes(b"".join(line + b"\n" for line in generate(60, seed=5)))
    both(events, tmp_path, Policy(), 2, datetime.fromisoformat("2027-01-01T00:00:00+00:00"))


def test_a_deadline_due_exactly_at_another_shards_line_fires_before_that_line(
    tmp_path: Path,
) -> None:
    # A's review deadline falls due exactly at B's request, which another shard applies: the
    # auto-approval is written before B's status line, as one process writes it, not at the
    # next line of A's own shard. (D, of A's shard, fires A's reminders a minute before: the
    # wheel's floor is then the deadline itself.)
    def of_shard(name: str, shard: int) -> str:
        while shard_of(b'{"order_id": "%s"}' % name.encode(), 2) != shard:
            name += "x"
        return name

    a = "o-a"
    home = shard_of(b'{"order_id": "o-a"}', 2)
    b, c, d = of_shard("o-b", 1 - home), of_shard("o-c", home), of_shard("o-d", home)
    due = T0 + timedelta(hours=48)
    records = [
        body("order.paid", T0, order_id=a),
        body("aftersale.requested", T0, order_id=a),
        body("order.paid", due - timedelta(minutes=1), order_id=d),
        body("order.paid", T0, order_id=b),
        body("aftersale.requested", due, order_id=b, case_id="c-b"),
        body("order.paid", due, order_id=c),
    ]
    events = tmp_path / "in.jsonl"
    events.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    both(events, tmp_path, Policy(), 2, None)
    status = (tmp_path / "many" / "status.jsonl").read_bytes().splitlines()
    assert [(r["order_id"], r.get("phase")) for r in map(orjson.loads, status)][-3:] == [
        (a, "awaiting_return"),
        (b, "review"),
        (c, None),
    ]


def test_the_shipped_sample_is_byte_identical_through_the_command(tmp_path: Path) -> None:
    args = ["replay", str(SAMPLE), "--until", "2026-12-31T00:00:00Z", "--status", "--quiet"]
    assert main([*args, "--jobs", "1", "--out", str(tmp_path / "one")]) == 0
    assert main([*args, "--jobs", "2", "--out", str(tmp_path / "two")]) == 0
    assert outputs(tmp_path / "two") == outputs(tmp_path / "one")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(max_orders=6))
def test_any_scenario_is_byte_identical_sharded(scenario: Scenario) -> None:
    # chunks of 3 lines: most scenarios span several
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as patch:
        patch.setattr(replay_jobs_module, "CHUNK_LINES", 3)
        out = Path(folder)
        events = out / "in.jsonl"
        events.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in scenario.records))
        both(events, out, scenario.policy, 3, scenario.until)


def test_an_empty_file_replays_to_empty_outputs(tmp_path: Path) -> None:
    events = tmp_path / "in.jsonl"
    events.write_bytes(b"\n  \n")
    both(events, tmp_path, Policy(), 2, None)
    assert outputs(tmp_path / "many") == dict.fromkeys(FILES, b"")


def test_a_line_without_an_order_goes_to_the_first_shard() -> None:
    assert shard_of(b"not json", 4) == 0
    assert shard_of(b'{"type": "order.paid"}', 4) == 0
    assert {shard_of(b'{"order_id": "o-%d"}' % n, 4) for n in range(40)} == {0, 1, 2, 3}


def test_a_shard_killed_mid_run_is_an_error_not_a_hang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def killed(*_: object) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    monkeypatch.setattr(replay_jobs_module._Shard, "finish", killed)
    with pytest.raises(ShardError, match=r"replay-shard-\d ended \(exit code -9\)"):
        replay_jobs(SAMPLE, tmp_path, Policy(), 2)


def test_a_shards_exception_is_raised_in_the_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> None:
        raise ValueError("boom")

    monkeypatch.setattr(replay_jobs_module._Shard, "finish", broken)
    with pytest.raises(ValueError, match="boom"):
        replay_jobs(SAMPLE, tmp_path, Policy(), 2)


@settings(max_examples=300, deadline=None)
@given(
    st.text(min_size=1, max_size=12),
    st.sampled_from(["compact", "spaced", "ascii", "nested before", "nested after", "escaped key"]),
    st.integers(2, 7),
)
def test_an_orders_lines_land_on_one_shard_however_the_json_is_spelled(
    order_id: str, spelling: str, jobs: int
) -> None:
    # the decoded top-level id decides, whatever else the line holds
    fields: dict[str, object] = {"type": "order.paid", "order_id": order_id}
    if spelling == "compact":
        raw = orjson.dumps(fields)
    elif spelling == "spaced":
        raw = json.dumps(fields, ensure_ascii=False).encode()
    elif spelling == "ascii":
        raw = json.dumps(fields).encode()
    elif spelling == "nested before":
        raw = orjson.dumps({"meta": {"order_id": "elsewhere"}, **fields})
    elif spelling == "nested after":
        raw = orjson.dumps({**fields, "meta": {"order_id": "elsewhere"}})
    else:
        raw = orjson.dumps(fields).replace(b'"order_id"', b'"order\\u005fid"')
    assert shard_of(raw, jobs) == zlib.crc32(order_id.encode()) % jobs


def test_jobs_must_be_a_positive_whole_number(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["replay", str(SAMPLE), "--out", "unused", "--jobs", "0"])
    assert exit_info.value.code == 2
    assert "--jobs: must be a whole number from 1 to 256, not '0'" in capsys.readouterr().err
