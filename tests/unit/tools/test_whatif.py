"""`aftersale whatif`: one log under two policies, and what a rule change would have done."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.rules.policy import Policy, policy_from_mapping
from streams.tools.cli import main
from streams.tools.whatif import whatif
from tests.unit.factories import body

H = timedelta(hours=1)
#: The merchant reviews in 36 h under A, in 48 h under B (the default).
A = policy_from_mapping({"deadlines": {"merchant_review": "PT36H"}})
B = Policy()


def log(tmp_path: Path) -> Path:
    """o-1: a return the merchant approves at 40 h (late under A); o-2: a refund the merchant
    rejects at 40 h (A has refunded it at 36 h); o-3: answered in time under both."""
    records: list[dict[str, Any]] = [
        body("order.paid", 0 * H, order_id="o-1"),
        body("order.paid", 0 * H, order_id="o-2", amount=12900),
        body("order.paid", 0 * H, order_id="o-3"),
        body("aftersale.requested", 0 * H, order_id="o-1", case_id="c-1"),
        body(
            "aftersale.requested",
            0 * H,
            order_id="o-2",
            case_id="c-2",
            kind="refund_only",
            amount=12900,
        ),
        body("aftersale.requested", 0 * H, order_id="o-3", case_id="c-3"),
        body("aftersale.rejected", 1 * H, order_id="o-3", case_id="c-3"),
        body("aftersale.approved", 40 * H, order_id="o-1", case_id="c-1"),
        body("aftersale.rejected", 40 * H, order_id="o-2", case_id="c-2"),
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


def test_the_cases_a_rule_change_decides_otherwise_and_what_they_refund(tmp_path: Path) -> None:
    result = whatif(log(tmp_path), (("A", A), ("B", B)))
    assert result.differ == [("o-1", "c-1"), ("o-2", "c-2")]  # not o-3
    assert result.divergences() == {
        ("auto_approve", "aftersale.approved"): 1,
        ("auto_refund", "aftersale.rejected"): 1,
    }
    assert result.a.refunded() == {"CNY": (1, 12900)}
    assert result.b.refunded() == {}
    assert (result.a.summary.refund_rate, result.b.summary.refund_rate) == (1 / 3, 0.0)
    text = result.render()
    assert "refunded amount (CNY)          129.00            0.00" in text
    assert "cases whose path differs: 2 (66.7% of 3)" in text
    assert "requested > auto_refund: refunded" in text


def test_one_policy_under_two_names_changes_nothing(tmp_path: Path) -> None:
    result = whatif(log(tmp_path), (("kuaishou", B), ("default", Policy())))
    assert result.differ == []
    assert result.a.refunded() == result.b.refunded()


def test_the_command_prints_json_for_tools(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "a.yaml"
    policy.write_text("deadlines: {merchant_review: PT36H}\n")
    args = ["whatif", str(log(tmp_path)), "--policy", str(policy), "--policy", "kuaishou"]
    assert main([*args, "--json", "--quiet"]) == 0
    out = orjson.loads(capsys.readouterr().out)
    assert out["cases_that_differ"] == 2
    assert out["a"]["refunded"] == {"CNY": {"cases": 1, "amount": 12900}}
    assert out["b"]["policy"] == "kuaishou"
    assert out["cases"][0] == {
        "order_id": "o-1",
        "case_id": "c-1",
        "a": {"path": ["aftersale.requested", "auto_approve"], "outcome": None, "amount": 5990},
        "b": {
            "path": ["aftersale.requested", "aftersale.approved"],
            "outcome": None,
            "amount": 5990,
        },
    }


@pytest.mark.parametrize(
    ("policies", "message"),
    [
        (["kuaishou"], "give --policy twice (A, then B), not 1 time(s)"),
        (["taobao", "taobao"], "both --policy are taobao: nothing to compare"),
        (["kuaishou", "jd"], "(or a preset: kuaishou, taobao, wechat)"),
    ],
)
def test_wrong_policies_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], policies: list[str], message: str
) -> None:
    args = ["whatif", str(log(tmp_path)), "--quiet"]
    for name in policies:
        args += ["--policy", name]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("aftersale whatif: error: ")
    assert message in err
