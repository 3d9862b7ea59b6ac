"""`aftersale simulate`: seeded, deterministic, realistic event streams."""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.contract.events import decode, event_types
from streams.contract.times import parse_time
from streams.errors import InputError, MalformedJson
from streams.rules.policy import RULES, Policy, load_policy, policy_from_mapping, resolve_policy
from streams.tools.cli import main
from streams.tools.replay import replay
from streams.tools.simulate import Mix, generate, policy_yaml, scaled_policy

CLEAN = Mix(bad_rate=0.0, retry_rate=0.0)
DEFAULT_MIX = Mix()


def lines(orders: int = 200, seed: int = 1, mix: Mix = DEFAULT_MIX) -> list[bytes]:
    return list(generate(orders, seed, mix=mix))


def test_same_seed_same_bytes() -> None:
    assert lines(seed=5) == lines(seed=5)


def test_other_seed_other_bytes() -> None:
    assert lines(seed=5) != lines(seed=6)


def test_zero_orders_give_nothing() -> None:
    assert lines(orders=0) == []


def test_every_line_is_json_or_intentionally_bad() -> None:
    produced = lines(orders=300, mix=Mix(bad_rate=0.2))
    bad = 0
    for line in produced:
        assert b"\n" not in line
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            bad += 1  # a truncated record
            with pytest.raises(MalformedJson):
                decode(line)
            continue
        assert isinstance(value, dict)
        try:
            decode(line)
        except InputError:
            assert value["event_id"].endswith("-bad"), line
            bad += 1
            continue
        if value["event_id"].endswith("-bad"):
            bad += 1  # an event for a case that was never opened
            assert value["case_id"] == "c-nope"
    assert 0.1 * len(produced) < bad < 0.3 * len(produced)


def test_clean_mix_decodes_every_line() -> None:
    produced = lines(orders=300, mix=CLEAN)
    assert produced
    events = [decode(line) for line in produced]
    assert len({e.event_id for e in events}) == len(events)
    assert not any(e.event_id.endswith("-bad") for e in events)
    kinds = Counter(e.type for e in events)
    assert kinds["order.paid"] == 300
    assert set(kinds) <= event_types()
    assert {"aftersale.requested", "aftersale.approved", "order.delivered"} <= set(kinds)


def test_lines_come_in_occurred_at_order() -> None:
    produced = lines(orders=400, mix=Mix(bad_rate=0.05, retry_rate=0.05))
    times = []
    for line in produced:
        try:
            times.append(decode(line).occurred_at)
        except InputError:
            continue
    assert len(times) > 400
    assert times == sorted(times)


def test_times_are_written_in_utc_and_china_time() -> None:
    stamps = [orjson.loads(line)["occurred_at"] for line in lines(orders=50, mix=CLEAN)]
    assert any(s.endswith("Z") for s in stamps)
    assert any(s.endswith("+08:00") for s in stamps)


def test_retries_repeat_event_ids() -> None:
    produced = lines(orders=300, mix=Mix(bad_rate=0.0, retry_rate=0.2))
    ids = Counter(decode(line).event_id for line in produced)
    repeated = [event_id for event_id, n in ids.items() if n > 1]
    assert len(repeated) > 0.1 * len(ids)


def test_start_and_span_place_the_orders() -> None:
    start = parse_time("2027-01-01T00:00:00Z")
    paid = [
        decode(line).occurred_at
        for line in generate(100, 1, start=start, span=timedelta(hours=1), mix=CLEAN)
        if b'"order.paid"' in line
    ]
    assert len(paid) == 100
    assert min(paid) == start
    assert max(paid) < start + timedelta(hours=1)


def test_scaled_policy_divides_every_duration() -> None:
    policy = Policy(
        deadlines={
            "merchant_review": timedelta(hours=48),
            "buyer_return": timedelta(days=10),
            "merchant_receipt": timedelta(days=4),
        },
        no_reason_window=timedelta(days=7),
        reminders={
            "merchant_review": (timedelta(hours=24), timedelta(hours=2)),
            "buyer_return": (),
            "merchant_receipt": (timedelta(days=2),),
        },
    )
    scaled = scaled_policy(policy, 3600)
    assert dict(scaled.deadlines) == {
        "merchant_review": timedelta(seconds=48),
        "buyer_return": timedelta(seconds=240),
        "merchant_receipt": timedelta(seconds=96),
    }
    assert scaled.no_reason_window == timedelta(seconds=168)
    assert dict(scaled.reminders) == {
        "merchant_review": (timedelta(seconds=24), timedelta(seconds=2)),
        "buyer_return": (),
        "merchant_receipt": (timedelta(seconds=48),),
    }
    assert scaled_policy(policy, 1) == policy


@pytest.mark.parametrize("scale", [1.0, 3600.0, 7.0, 0.5, 86400.0, 1e6])
def test_policy_yaml_round_trips(tmp_path: Path, scale: float) -> None:
    policy = scaled_policy(Policy(), scale)
    path = tmp_path / "policy.yaml"
    path.write_text(policy_yaml(policy), encoding="utf-8")
    assert load_policy(path) == policy


@settings(max_examples=100, deadline=None)
@given(st.floats(min_value=0.01, max_value=1e5, allow_nan=False))
def test_policy_yaml_round_trips_for_any_scale(scale: float) -> None:
    policy = scaled_policy(Policy(), scale)
    assert policy_from_mapping(yaml.safe_load(policy_yaml(policy))) == policy
    kept = scaled_policy(Policy(order_retention=timedelta(days=180)), scale)
    assert kept.order_retention == timedelta(days=180) / scale
    assert policy_from_mapping(yaml.safe_load(policy_yaml(kept))) == kept


def test_policy_yaml_keeps_empty_reminders(tmp_path: Path) -> None:
    policy = Policy(reminders=dict.fromkeys(RULES, ()))
    path = tmp_path / "policy.yaml"
    path.write_text(policy_yaml(policy), encoding="utf-8")
    assert load_policy(path) == policy


def test_time_scale_compresses_the_story() -> None:
    normal = [decode(line).occurred_at for line in lines(orders=50, mix=CLEAN)]
    fast = [
        decode(line).occurred_at
        for line in generate(
            50,
            1,
            span=timedelta(days=1) / 3600,
            policy=scaled_policy(Policy(), 3600),
            scale=3600,
            mix=CLEAN,
        )
    ]
    assert max(fast) - min(fast) < (max(normal) - min(normal)) / 100


# --- the command ---------------------------------------------------------------------------


def test_cli_writes_lines(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    assert main(["simulate", "--orders", "50", "--out", str(out)]) == 0
    written = out.read_bytes().splitlines()
    assert len(written) >= 150
    assert written == list(generate(50, 1))


def test_cli_is_deterministic_and_writes_the_policy(tmp_path: Path) -> None:
    args = ["simulate", "--orders", "30", "--seed", "9", "--time-scale", "3600"]
    a, b, policy = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "policy.yaml"
    assert main([*args, "--out", str(a), "--policy-out", str(policy)]) == 0
    assert main([*args, "--out", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()
    assert load_policy(policy) == scaled_policy(Policy(), 3600)


def test_cli_to_stdout(capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    assert main(["simulate", "--orders", "5", "--bad-rate", "0", "--retry-rate", "0"]) == 0
    out = capfdbinary.readouterr().out.splitlines()
    assert out
    for line in out:
        decode(line)


@pytest.mark.parametrize(
    "args",
    [
        ["--time-scale", "0"],
        ["--time-scale", "-1"],
        ["--orders", "-1"],
        ["--bad-rate", "1.5"],
        ["--retry-rate", "-0.1"],
        ["--start", "2026-11-01"],
        ["--span", "P1M"],
        ["--span", "soon"],
        ["--policy", "/nonexistent/policy.yaml"],
    ],
)
def test_cli_refuses_bad_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    out = tmp_path / "events.jsonl"
    assert main(["simulate", "--orders", "5", *args, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip().splitlines()
    assert len(err) == 1, captured.err
    assert err[0].startswith("aftersale simulate: error: ")
    assert "Traceback" not in captured.err


@pytest.mark.parametrize(
    "args",
    [["--time-scale", "nan"], ["--time-scale", "inf"], ["--span", "inf"], ["--span", "1e20"]],
)
def test_cli_refuses_non_finite_values_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    out = tmp_path / "events.jsonl"
    assert main(["simulate", "--orders", "5", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("aftersale simulate: error: ")


def test_cli_negative_span_is_refused_or_still_in_order(tmp_path: Path) -> None:
    # Lines come out in occurred_at order (the module's promise); a negative span must not
    # silently break that.
    out = tmp_path / "events.jsonl"
    argv = ["simulate", "--orders", "50", "--span", "-86400", "--bad-rate", "0", "--out", str(out)]
    code = main(argv)
    if code == 2:
        return
    assert code == 0
    times = [decode(line).occurred_at for line in out.read_bytes().splitlines()]
    assert times == sorted(times)


def test_policy_yaml_keeps_the_freezes_and_scaling_leaves_them_alone() -> None:
    start = datetime(2027, 2, 1, 0, 0, 0, 250_000, tzinfo=UTC)
    policy = Policy(freezes=((start, start + timedelta(days=7)),))
    assert policy_from_mapping(yaml.safe_load(policy_yaml(policy))) == policy
    assert scaled_policy(policy, 3600).freezes == policy.freezes


def test_policy_yaml_keeps_every_version_and_scales_each() -> None:
    policy = policy_from_mapping(
        {
            "order_retention": "P90D",
            "versions": [
                {"deadlines": {"buyer_return": "P10D"}},
                {"effective_from": "2027-03-01T00:00:00+08:00", "reminders": {"buyer_return": []}},
            ],
        }
    )
    assert policy_from_mapping(yaml.safe_load(policy_yaml(policy))) == policy
    scaled = scaled_policy(policy, 3600)
    assert scaled.versions[0].deadlines["buyer_return"] == timedelta(seconds=240)
    assert scaled.versions[0].effective_from == policy.versions[0].effective_from
    assert policy_from_mapping(yaml.safe_load(policy_yaml(scaled))) == scaled


def test_without_every_path_a_seed_gives_the_stream_it_always_gave() -> None:
    # the digest of `generate(200, 1)` before --every-path existed (commit 5a12633): figures
    # measured on simulated streams stay reproducible
    digest = hashlib.sha256(b"".join(line + b"\n" for line in lines(200, 1))).hexdigest()
    assert digest == "11fb449ec513bab0eaa6a5cd140783ac8c30f459e18de7b08bc24538ed108471"


def test_every_path_generates_the_added_paths_and_replay_takes_every_rule(tmp_path: Path) -> None:
    policy = resolve_policy("taobao")  # with the unshipped review and the escalation window
    mix = Mix(bad_rate=0.0, retry_rate=0.0, every_path=True)
    produced = list(generate(1500, 2, policy=policy, mix=mix))
    events = [decode(line) for line in produced]
    types = Counter(e.type for e in events)
    added = {
        "aftersale.evidence_requested",
        "aftersale.evidence_provided",
        "aftersale.reshipped",
        "aftersale.merchant_refunded",
        "aftersale.escalated",
    }
    assert added <= set(types)
    kinds = Counter(e.body["kind"] for e in events if e.type == "aftersale.requested")
    assert {"refund_only", "return_refund", "exchange", "repair"} <= set(kinds)
    source = tmp_path / "events.jsonl"
    source.write_bytes(b"".join(line + b"\n" for line in produced))
    replay(source, tmp_path / "out", policy, parse_time("2026-12-31T00:00:00Z"))
    actions = [
        orjson.loads(line) for line in (tmp_path / "out/actions.jsonl").read_bytes().splitlines()
    ]
    assert {a["rule"] for a in actions} == set(RULES)  # every rule lapses somewhere
    plain = {decode(line).type for line in generate(300, 2, mix=CLEAN)}
    assert not plain & (added - {"aftersale.escalated"})  # opt-in only
