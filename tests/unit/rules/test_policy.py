"""The deadline policy: defaults, the YAML file, and every way a file can be wrong."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from streams.errors import ConfigError, PolicyError
from streams.rules.policy import RULES, Policy, load_policy, policy_from_mapping

CONTRACT_EXAMPLE = """\
deadlines: {merchant_review: PT48H, buyer_return: P10D, merchant_receipt: P10D}
no_reason_window: P7D
reminders: {merchant_review: [PT24H, PT2H], buyer_return: [P2D], merchant_receipt: [P2D]}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def assert_default(policy: Policy) -> None:
    assert dict(policy.deadlines) == {
        "merchant_review": timedelta(hours=48),
        "buyer_return": timedelta(days=10),
        "merchant_receipt": timedelta(days=10),
    }
    assert policy.no_reason_window == timedelta(days=7)
    assert dict(policy.reminders) == {
        "merchant_review": (timedelta(hours=24), timedelta(hours=2)),
        "buyer_return": (timedelta(days=2),),
        "merchant_receipt": (timedelta(days=2),),
    }
    assert policy.offsets("merchant_review") == (timedelta(hours=24), timedelta(hours=2))


def test_default_policy_is_the_contracts() -> None:
    assert_default(Policy())


def test_orders_are_kept_forever_by_default() -> None:
    assert Policy().order_retention is None


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("order_retention: P180D\n", timedelta(days=180)),
        ("order_retention: 3600\n", timedelta(hours=1)),
        ("order_retention: PT0.5S\n", timedelta(milliseconds=500)),
        ("order_retention: null\n", None),  # forever, as when the key is absent
        ("deadlines: {merchant_review: PT1H}\n", None),
    ],
)
def test_order_retention(tmp_path: Path, text: str, kept: timedelta | None) -> None:
    assert load_policy(write(tmp_path, text)).order_retention == kept


def test_load_policy_none_is_the_default() -> None:
    assert_default(load_policy(None))
    assert load_policy(None) == Policy()


def test_contract_example_file_gives_the_default(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, CONTRACT_EXAMPLE))
    assert_default(policy)
    assert policy == Policy()


def test_load_policy_accepts_str_path(tmp_path: Path) -> None:
    assert load_policy(str(write(tmp_path, CONTRACT_EXAMPLE))) == Policy()


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_empty_file_gives_the_default(tmp_path: Path, text: str) -> None:
    assert load_policy(write(tmp_path, text)) == Policy()


def test_partial_file_keeps_other_defaults(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, "deadlines: {buyer_return: P5D}\n"))
    assert policy.deadlines["buyer_return"] == timedelta(days=5)
    assert policy.deadlines["merchant_review"] == timedelta(hours=48)
    assert policy.deadlines["merchant_receipt"] == timedelta(days=10)
    assert policy.no_reason_window == timedelta(days=7)
    assert dict(policy.reminders) == dict(Policy().reminders)


def test_partial_reminders_keep_other_rules(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, "reminders: {buyer_return: [P1D, PT1H]}\n"))
    assert policy.offsets("buyer_return") == (timedelta(days=1), timedelta(hours=1))
    assert policy.offsets("merchant_review") == (timedelta(hours=24), timedelta(hours=2))
    assert policy.offsets("merchant_receipt") == (timedelta(days=2),)
    assert dict(policy.deadlines) == dict(Policy().deadlines)


def test_seconds_and_fractions(tmp_path: Path) -> None:
    text = (
        "deadlines: {merchant_review: 172800, buyer_return: 0.5, merchant_receipt: '90'}\n"
        "no_reason_window: 1.25\n"
        "reminders: {merchant_review: [3600, 0.25], buyer_return: [0.1]}\n"
    )
    policy = load_policy(write(tmp_path, text))
    assert dict(policy.deadlines) == {
        "merchant_review": timedelta(hours=48),
        "buyer_return": timedelta(milliseconds=500),
        "merchant_receipt": timedelta(seconds=90),
    }
    assert policy.no_reason_window == timedelta(seconds=1.25)
    assert policy.offsets("merchant_review") == (timedelta(hours=1), timedelta(milliseconds=250))
    assert policy.offsets("buyer_return") == (timedelta(milliseconds=100),)


def test_reminders_sorted_largest_first(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, "reminders: {merchant_review: [PT1H, P1D, PT6H]}\n"))
    assert policy.offsets("merchant_review") == (
        timedelta(days=1),
        timedelta(hours=6),
        timedelta(hours=1),
    )


def test_duplicate_offsets_are_deduplicated(tmp_path: Path) -> None:
    text = "reminders: {merchant_review: [PT24H, P1D, 86400, PT2H, PT2H]}\n"
    policy = load_policy(write(tmp_path, text))
    assert policy.offsets("merchant_review") == (timedelta(days=1), timedelta(hours=2))


@pytest.mark.parametrize("value", ["[]", "null", ""])
def test_empty_reminders_mean_none(tmp_path: Path, value: str) -> None:
    policy = load_policy(write(tmp_path, f"reminders:\n  buyer_return: {value}\n"))
    assert policy.offsets("buyer_return") == ()
    assert policy.offsets("merchant_review") == (timedelta(hours=24), timedelta(hours=2))


def test_every_rule_has_a_reminder_entry(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, "reminders: {}\n"))
    assert set(policy.reminders) == set(RULES)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("deadline: {merchant_review: PT1H}\n", "deadline"),
        ("no_reason: P7D\n", "no_reason"),
        ("reminders: {}\nextra: 1\n", "extra"),
        ("deadlines: {merchant_reveiw: PT1H}\n", "merchant_reveiw"),
        ("deadlines: {no_reason_window: PT1H}\n", "no_reason_window"),
        ("reminders: {buyer_returns: [P1D]}\n", "buyer_returns"),
        ("order_retention_days: 90\n", "order_retention_days.*order_retention"),
    ],
)
def test_unknown_key_is_named(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(PolicyError, match=named):
        load_policy(write(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("deadlines: {merchant_review: 0}\n", "deadlines.merchant_review"),
        ("deadlines: {buyer_return: PT0S}\n", "deadlines.buyer_return"),
        ("deadlines: {merchant_receipt: -5}\n", "deadlines.merchant_receipt"),
        ("deadlines: {merchant_receipt: '-PT1H'}\n", "deadlines.merchant_receipt"),
        ("no_reason_window: 0\n", "no_reason_window"),
        ("no_reason_window: -1.5\n", "no_reason_window"),
        ("reminders: {merchant_review: [PT1H, 0]}\n", "reminders.merchant_review"),
        ("reminders: {buyer_return: [-60]}\n", "reminders.buyer_return"),
        ("order_retention: 0\n", "order_retention"),
        ("order_retention: -P1D\n", "order_retention"),
    ],
)
def test_zero_and_negative_durations_are_refused(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(PolicyError, match=named):
        load_policy(write(tmp_path, text))


@pytest.mark.parametrize(
    "text",
    [
        "deadlines: {buyer_return: P1M}\n",
        "no_reason_window: P1Y\n",
        "order_retention: P6M\n",
        "reminders: {merchant_review: [P1M]}\n",
    ],
)
def test_months_and_years_are_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(PolicyError, match="months and years"):
        load_policy(write(tmp_path, text))


@pytest.mark.parametrize(
    "text",
    [
        "deadlines: {buyer_return: soon}\n",
        "deadlines: {buyer_return: true}\n",
        "deadlines: {buyer_return: [P1D]}\n",
        "no_reason_window: null\n",
        "no_reason_window: PT\n",
        "reminders: {merchant_review: [nope]}\n",
        "reminders: {merchant_review: [true]}\n",
    ],
)
def test_invalid_durations_are_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(PolicyError, match=r"\S"):
        load_policy(write(tmp_path, text))


@pytest.mark.parametrize(
    "text",
    [
        "reminders: {merchant_review: PT2H}\n",
        "reminders: {merchant_review: 3600}\n",
        "reminders: {merchant_review: {a: PT1H}}\n",
    ],
)
def test_reminders_must_be_lists(tmp_path: Path, text: str) -> None:
    with pytest.raises(PolicyError, match=r"reminders\.merchant_review must be a list"):
        load_policy(write(tmp_path, text))


@pytest.mark.parametrize(
    "text", ["deadlines: [PT1H]\n", "deadlines: PT1H\n", "reminders: [PT1H]\n"]
)
def test_rule_sections_must_be_mappings(tmp_path: Path, text: str) -> None:
    with pytest.raises(PolicyError, match="must be a mapping"):
        load_policy(write(tmp_path, text))


@pytest.mark.parametrize(
    "text",
    [
        "deadlines: {merchant_review: .inf}\n",
        "no_reason_window: 1e20\n",
        "deadlines: {buyer_return: P99999999999D}\n",
    ],
)
def test_out_of_range_durations_are_a_policy_error(tmp_path: Path, text: str) -> None:
    # The CLI reports AftersaleError subclasses as a one-line error; anything else is a traceback.
    with pytest.raises(PolicyError, match=r"\S"):
        load_policy(write(tmp_path, text))


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "policy.yaml"
    with pytest.raises(PolicyError, match="cannot read policy file") as info:
        load_policy(path)
    assert str(path) in str(info.value)


def test_directory_is_not_a_policy_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=re.escape(str(tmp_path))):
        load_policy(tmp_path)


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_bytes(b"no_reason_window: \xff\xfe\n")
    with pytest.raises(PolicyError, match="UTF-8"):
        load_policy(path)


@pytest.mark.parametrize(
    "text", ["deadlines: {merchant_review: [\n", "a: b: c\n", "key: 'unterminated\n"]
)
def test_invalid_yaml_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(write(tmp_path, text))


@pytest.mark.parametrize("text", ["- PT48H\n- P10D\n", "PT48H\n", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    with pytest.raises(PolicyError, match="mapping at the top level"):
        load_policy(write(tmp_path, text))


def test_policy_error_is_a_config_error() -> None:
    assert issubclass(PolicyError, ConfigError)
    assert not PolicyError.retriable


def test_policy_from_mapping_names_its_source() -> None:
    with pytest.raises(PolicyError, match=r"^settings: unknown key 'bogus'"):
        policy_from_mapping({"bogus": 1}, "settings")
