"""`aftersale replay`: the contract's Replay section, end to end through the CLI entry point."""

from __future__ import annotations

import base64
import gc
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.rules.policy import Policy
from streams.tools.cli import main
from streams.tools.gc_tuning import GC_THRESHOLDS
from streams.tools.replay import replay
from tests.unit.factories import body

H = timedelta(hours=1)


def write(path: Path, records: list[dict[str, Any] | bytes]) -> Path:
    lines = [r if isinstance(r, bytes) else orjson.dumps(r) for r in records]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def read(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_outputs_actions_reminders_and_dead_letters(tmp_path: Path) -> None:
    events = write(
        tmp_path / "in.jsonl",
        [
            body("order.paid", 0 * H),
            body("aftersale.requested", 1 * H),
            b"not json",
            body("aftersale.approved", 1 * H, case_id="c-missing"),
        ],
    )
    summary = replay(events, tmp_path / "out", Policy(), until=None)
    # the clock stopped at the last record: nothing is due yet
    assert summary.actions == {}
    code = main(
        ["replay", str(events), "--until", "2026-11-20T00:00:00Z", "--out", str(tmp_path / "o2")]
    )
    assert code == 0
    actions = read(tmp_path / "o2" / "actions.jsonl")
    assert [a["action_id"] for a in actions] == ["c-42:merchant_review", "c-42:buyer_return"]
    assert [a["type"] for a in actions] == ["auto_approve", "auto_close"]
    assert all(a["fired_at"] == a["deadline_at"] for a in actions)
    assert actions[0]["deadline_at"] == "2026-11-03T11:00:00Z"
    assert actions[1]["deadline_at"] == "2026-11-13T11:00:00Z"
    notes = read(tmp_path / "o2" / "notifications.jsonl")
    assert [n["notification_id"] for n in notes] == [
        "c-42:merchant_review:86400",
        "c-42:merchant_review:7200",
        "c-42:buyer_return:172800",
    ]
    dead = read(tmp_path / "o2" / "deadletter.jsonl")
    assert [d["error"] for d in dead] == ["malformed_json", "unknown_case"]
    assert dead[0]["original"] == "not json"
    assert base64.b64decode(dead[0]["original_base64"]) == b"not json"
    assert (dead[0]["topic"], dead[0]["partition"], dead[0]["offset"]) == (None, None, None)


def test_dead_letter_keeps_exact_bytes_of_invalid_utf8(tmp_path: Path) -> None:
    raw = b'{"type": "order.paid", "x": "\xff\xfe"}'
    events = write(tmp_path / "in.jsonl", [raw])
    replay(events, tmp_path / "out", Policy())
    (dead,) = read(tmp_path / "out" / "deadletter.jsonl")
    assert dead["error"] == "malformed_json"
    assert dead["original"] is None
    assert base64.b64decode(dead["original_base64"]) == raw


def test_refused_records_do_not_move_the_clock(tmp_path: Path) -> None:
    future = body("aftersale.bogus", 1000 * H)  # unknown_type: does not move the clock
    events = write(
        tmp_path / "in.jsonl",
        [body("aftersale.requested", 0 * H), future, body("aftersale.approved", 2 * H)],
    )
    summary = replay(events, tmp_path / "out", Policy())
    assert summary.applied == 2
    assert dict(summary.dead_letters) == {"unknown_type": 1}
    assert summary.actions == {}


def test_validated_but_refused_records_do_move_the_clock(tmp_path: Path) -> None:
    # unknown_case is judged after validation, so its occurred_at moves the clock past the
    # deadline: file order is arrival order, and the in-time approval read after it is late.
    events = write(
        tmp_path / "in.jsonl",
        [
            body("aftersale.requested", 0 * H),
            body("aftersale.approved", 100 * H, case_id="c-other"),
            body("aftersale.approved", 2 * H),
        ],
    )
    summary = replay(events, tmp_path / "out", Policy())
    assert dict(summary.dead_letters) == {"unknown_case": 1, "invalid_transition": 1}
    assert dict(summary.actions) == {"auto_approve": 1}


def test_until_earlier_than_the_clock_does_not_go_back(tmp_path: Path) -> None:
    events = write(tmp_path / "in.jsonl", [body("aftersale.requested", 0 * H)])
    replay(events, tmp_path / "a", Policy(), until=None)
    assert read(tmp_path / "a" / "notifications.jsonl") == []
    code = main(
        ["replay", str(events), "--until", "2026-10-01T00:00:00Z", "--out", str(tmp_path / "b")]
    )
    assert code == 0
    assert read(tmp_path / "b" / "actions.jsonl") == []


def test_blank_lines_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    rec = orjson.dumps(body("aftersale.requested", 0 * H))
    path.write_bytes(b"\r\n" + rec + b"\r\n   \n\n")
    summary = replay(path, tmp_path / "out", Policy())
    assert (summary.read, summary.applied) == (1, 1)


@pytest.fixture
def gc_threshold() -> Iterator[tuple[int, int, int]]:
    """A distinctive GC threshold for the test, and the original one back afterwards."""
    original = gc.get_threshold()
    gc.set_threshold(1234, 5, 6)
    yield gc.get_threshold()
    gc.set_threshold(*original)


def test_collects_young_objects_rarely_while_it_runs_only(
    tmp_path: Path, gc_threshold: tuple[int, int, int]
) -> None:
    path = write(tmp_path / "in.jsonl", [body("aftersale.requested", 0 * H)])
    during: list[tuple[int, int, int]] = []
    replay(path, tmp_path / "out", Policy(), progress=lambda *_: during.append(gc.get_threshold()))
    assert during
    assert set(during) == {GC_THRESHOLDS}
    assert gc.get_threshold() == gc_threshold

    def interrupt(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        replay(path, tmp_path / "out", Policy(), progress=interrupt)
    assert gc.get_threshold() == gc_threshold


def test_a_deeply_nested_record_is_a_dead_letter(tmp_path: Path) -> None:
    deep = b'{"x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    path = write(tmp_path / "in.jsonl", [deep, body("aftersale.requested", 0 * H)])
    summary = replay(path, tmp_path / "out", Policy())
    assert (summary.read, summary.applied) == (2, 1)
    assert dict(summary.dead_letters) == {"malformed_json": 1}


def test_a_large_line_is_a_small_dead_letter_and_a_long_id_a_schema_violation(
    tmp_path: Path,
) -> None:
    large = b'{"pad": "' + b"x" * 1_000_000 + b'"}'
    long_id = body("aftersale.requested", 0 * H, order_id="o" * 257)
    path = write(tmp_path / "in.jsonl", [large, long_id, body("aftersale.requested", 0 * H)])
    summary = replay(path, tmp_path / "out", Policy())
    assert (summary.read, summary.applied) == (3, 1)
    big, long = read(tmp_path / "out" / "deadletter.jsonl")
    assert (big["error"], big["truncated"], big["original_size"]) == (
        "schema_violation",
        True,
        len(large),
    )
    assert base64.b64decode(big["original_base64"]) == large[: 64 * 1024]
    assert long["error"] == "schema_violation"
    assert "order_id" in long["detail"]
    assert "truncated" not in long
    assert (tmp_path / "out" / "deadletter.jsonl").stat().st_size < 200_000


def test_output_is_byte_identical_for_the_same_input(tmp_path: Path) -> None:
    from streams.tools.simulate import generate

    events = tmp_path / "in.jsonl"
    events.write_bytes(b"".join(line + b"\n" for line in generate(300, seed=7)))
    args = ["replay", str(events), "--until", "2027-01-01T00:00:00Z", "--quiet", "--out"]
    assert main([*args, str(tmp_path / "a")]) == 0
    assert main([*args, str(tmp_path / "b")]) == 0
    for name in ("actions.jsonl", "notifications.jsonl", "deadletter.jsonl"):
        first = (tmp_path / "a" / name).read_bytes()
        assert first, name
        assert first == (tmp_path / "b" / name).read_bytes()


def test_summary_is_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = write(
        tmp_path / "in.jsonl",
        [
            body("order.paid", 0 * H),
            body("aftersale.requested", 1 * H, kind="refund_only"),
            body("aftersale.requested", 1 * H, kind="refund_only"),
            b"[]",
        ],
    )
    args = ["replay", str(events), "--until", "2026-11-30T00:00:00Z", "--out", str(tmp_path / "o")]
    assert main([*args, "--json"]) == 0
    summary = orjson.loads(capsys.readouterr().out)
    assert summary == {
        "events_read": 4,
        "applied": 2,
        "duplicates": 0,
        "dead_letters": {"case_already_open": 1, "malformed_json": 1},
        "actions": {"auto_refund": 1},
        "reminders": 2,
        "paid_orders": 1,
        "refunded_orders": 1,
        "refund_rate": 1.0,
        "forgotten_orders": 0,
    }
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "refund rate   100.00%" in text
    assert "dead letters  2 (case_already_open 1, malformed_json 1)" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["replay", "missing.jsonl", "--out", "o"], "input file not found: missing.jsonl"),
        (["replay", "IN", "--out", "o", "--policy", "nope.yaml"], "cannot read policy file"),
        (["replay", "IN", "--out", "o", "--policy", "BADPOLICY"], "unknown key 'deadline'"),
    ],
)
def test_clear_one_line_errors(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "IN", [body("order.paid", 0 * H)])
    (tmp_path / "BADPOLICY").write_text("deadline: {merchant_review: PT1H}\n")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_bad_until_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "x.jsonl", "--out", "o", "--until", "tomorrow"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "aftersale replay: error: --until 'tomorrow' is not an RFC 3339 time with an offset "
        "(e.g. 2026-11-03T10:00:00Z)\n"
    )


def test_a_preset_by_name_sets_the_deadlines(tmp_path: Path) -> None:
    events = write(tmp_path / "in.jsonl", [body("aftersale.requested", 0 * H)])
    args = ["replay", str(events), "--quiet", "--until", "2026-11-30T00:00:00Z"]
    assert main([*args, "--policy", "taobao", "--out", str(tmp_path / "taobao")]) == 0
    assert main([*args, "--policy", "kuaishou", "--out", str(tmp_path / "kuaishou")]) == 0
    taobao = read(tmp_path / "taobao" / "actions.jsonl")
    kuaishou = read(tmp_path / "kuaishou" / "actions.jsonl")
    # the review (5 days / 48 hours), then the buyer's return (7 days / 10 days)
    assert [(a["type"], a["deadline_at"]) for a in taobao] == [
        ("auto_approve", "2026-11-06T10:00:00Z"),
        ("auto_close", "2026-11-13T10:00:00Z"),
    ]
    assert [(a["type"], a["deadline_at"]) for a in kuaishou] == [
        ("auto_approve", "2026-11-03T10:00:00Z"),
        ("auto_close", "2026-11-13T10:00:00Z"),
    ]


def test_an_unknown_policy_name_is_one_line_naming_the_presets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = write(tmp_path / "in.jsonl", [body("order.paid", 0 * H)])
    assert main(["replay", str(events), "--policy", "jd", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "cannot read policy file jd" in err
    assert "(or a preset: kuaishou, taobao, wechat)" in err


def test_policy_file_changes_deadlines(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("deadlines: {merchant_review: PT1H}\nreminders: {merchant_review: []}\n")
    events = write(tmp_path / "in.jsonl", [body("aftersale.requested", 0 * H)])
    args = ["replay", str(events), "--policy", str(policy), "--quiet"]
    assert main([*args, "--until", "2026-11-01T11:00:00Z", "--out", str(tmp_path / "o")]) == 0
    (action,) = read(tmp_path / "o" / "actions.jsonl")
    assert action["deadline_at"] == "2026-11-01T11:00:00Z"
    assert read(tmp_path / "o" / "notifications.jsonl") == []
