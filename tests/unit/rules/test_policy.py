"""The deadline policy: defaults, the YAML file, and every way a file can be wrong."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.errors import ConfigError, PolicyError
from streams.rules.policy import (
    RULES,
    Policy,
    load_policy,
    merge_freezes,
    policy_from_mapping,
    reload_refusal,
)

CONTRACT_EXAMPLE = """\
deadlines: {merchant_review: PT48H, buyer_return: P10D, merchant_receipt: P10D}
no_reason_window: P7D
reminders: {merchant_review: [PT24H, PT2H], buyer_return: [P2D], merchant_receipt: [P2D]}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return path


#: The defaults of this project's rules for the paths the contract does not have
#: (topics/README.md); unshipped_review and buyer_escalation run only when given a duration.
ADDED_DEADLINES = {
    "buyer_evidence": timedelta(days=3),
    "merchant_reship": timedelta(days=3),
    "merchant_repair": timedelta(days=30),
}


def assert_default(policy: Policy) -> None:
    assert dict(policy.deadlines) == {
        "merchant_review": timedelta(hours=48),
        "buyer_return": timedelta(days=10),
        "merchant_receipt": timedelta(days=10),
        **ADDED_DEADLINES,
    }
    assert policy.no_reason_window == timedelta(days=7)
    assert dict(policy.reminders) == {
        "merchant_review": (timedelta(hours=24), timedelta(hours=2)),
        "buyer_return": (timedelta(days=2),),
        "merchant_receipt": (timedelta(days=2),),
        "unshipped_review": (),
        "buyer_evidence": (timedelta(hours=24),),
        "merchant_reship": (timedelta(hours=24),),
        "merchant_repair": (timedelta(days=3),),
        "buyer_escalation": (),
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
        **ADDED_DEADLINES,
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


# --- clock freezes: periods in which deadline time does not run -------------------------------

T = datetime(2027, 2, 1, tzinfo=UTC)
D = timedelta(days=1)
MICRO = timedelta(microseconds=1)


def frozen(*periods: tuple[timedelta, timedelta]) -> Policy:
    """A policy whose freezes are [T + a, T + b) for each (a, b)."""
    return Policy(freezes=merge_freezes([(T + a, T + b) for a, b in periods]))


def test_freezes_are_read_from_the_file_in_any_offset(tmp_path: Path) -> None:
    policy = load_policy(
        write(
            tmp_path,
            "freezes:\n"
            "  - {from: '2027-02-01T08:00:00+08:00', to: '2027-02-08T00:00:00Z',"
            " name: Spring Festival}\n"
            "  - {from: 2027-05-01T00:00:00+08:00, to: 2027-05-02T00:00:00+08:00}\n",
        )
    )
    assert policy.freezes == (
        (T, T + 7 * D),
        (datetime(2027, 4, 30, 16, tzinfo=UTC), datetime(2027, 5, 1, 16, tzinfo=UTC)),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("freezes: {from: 2027-02-01T00:00:00Z}", "freezes must be a list"),
        ("freezes: [{from: '2027-02-01T00:00:00Z'}]", r"freezes\[1\] must be a mapping with"),
        (
            "freezes: [{from: '2027-02-02T00:00:00Z', to: '2027-02-01T00:00:00Z'}]",
            r"freezes\[1\]: to must be after from",
        ),
        (
            "freezes: [{from: '2027-02-01T00:00:00Z', to: '2027-02-01T00:00:00Z'}]",
            r"freezes\[1\]: to must be after from",
        ),
        (
            "freezes: [{from: 2027-02-01 00:00:00, to: '2027-02-02T00:00:00Z'}]",
            r"freezes\[1\].from: .* has no offset",
        ),
        ("freezes: [{from: tomorrow, to: '2027-02-02T00:00:00Z'}]", r"freezes\[1\].from: not an"),
        (
            "freezes: [{from: '8999-01-01T00:00:00Z', to: '9001-01-01T00:00:00Z'}]",
            "before the year 9000",
        ),
        (
            "freezes: [{from: '2027-02-01T00:00:00Z', to: '2027-02-02T00:00:00Z', until: x}]",
            r"freezes\[1\]: unknown key 'until'",
        ),
    ],
)
def test_bad_freezes_are_refused_naming_the_entry(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        load_policy(write(tmp_path, text + "\n"))


def test_overlapping_nested_and_adjacent_freezes_merge() -> None:
    periods = [
        (T + 5 * D, T + 6 * D),
        (T, T + 2 * D),
        (T + D, T + D + D / 2),
        (T + 2 * D, T + 3 * D),
    ]
    assert merge_freezes(periods) == ((T, T + 3 * D), (T + 5 * D, T + 6 * D))


@pytest.mark.parametrize(
    ("start", "running", "freezes", "due"),
    [
        # no freeze in the way
        (T, 2 * D, [(3 * D, 4 * D)], T + 2 * D),
        (T, 2 * D - MICRO, [(2 * D, 4 * D)], T + 2 * D - MICRO),  # just before the start
        # a deadline at a freeze's start falls within it: it moves to the end
        (T, 2 * D, [(2 * D, 4 * D)], T + 4 * D),
        # one that spans a freeze moves by its length
        (T, 2 * D, [(D, D + D / 2)], T + 2 * D + D / 2),
        # started within a freeze, or at its start: runs from its end
        (T + D, 2 * D, [(0 * D, 3 * D)], T + 5 * D),
        (T, 2 * D, [(0 * D, 3 * D)], T + 5 * D),
        # started at a freeze's end: the freeze is behind it
        (T + 3 * D, 2 * D, [(0 * D, 3 * D)], T + 5 * D),
        # adjacent freezes are one: a deadline at the first's start moves past both
        (T, D, [(D, 2 * D), (2 * D, 3 * D)], T + 3 * D),
        # nested: the outer one counts
        (T, D, [(D / 2, 3 * D), (D, 2 * D)], T + 3 * D + D / 2),
        # several on the way
        (T, 3 * D, [(D, 2 * D), (3 * D, 4 * D)], T + 5 * D),
    ],
)
def test_a_deadline_moves_by_the_frozen_time_it_spans(
    start: datetime, running: timedelta, freezes: list[tuple[timedelta, timedelta]], due: datetime
) -> None:
    policy = frozen(*freezes)
    assert policy.deadline_after(start, running) == due
    assert policy.running_between(start, due) == running


def test_a_freeze_in_another_offset_is_the_same_freeze() -> None:
    china = timezone(timedelta(hours=8))
    there = Policy(freezes=merge_freezes([(datetime(2027, 2, 2, 8, tzinfo=china), T + 2 * D)]))
    assert there.deadline_after(T, 2 * D) == frozen((D, 2 * D)).deadline_after(T, 2 * D)


instants = st.integers(0, 20 * 24).map(lambda hours: T + timedelta(hours=hours))
fine_instants = st.integers(0, 20 * 24 * 3600 * 1_000_000).map(lambda us: T + us * MICRO)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.tuples(st.one_of(instants, fine_instants), st.integers(1, 5 * 24)), max_size=5),
    st.one_of(instants, fine_instants),
    st.integers(1, 10 * 24 * 3600 * 1_000_000).map(lambda us: us * MICRO),
)
def test_deadline_time_outside_freezes_is_the_policy_duration(
    periods: list[tuple[datetime, int]], start: datetime, running: timedelta
) -> None:
    policy = Policy(
        freezes=merge_freezes([(at, at + timedelta(hours=hours)) for at, hours in periods])
    )
    due = policy.deadline_after(start, running)
    assert policy.running_between(start, due) == running
    assert not any(a <= due < b for a, b in policy.freezes)  # never within a freeze
    before = due - MICRO  # and the earliest such instant
    assert any(a <= before < b for a, b in policy.freezes) or (
        policy.running_between(start, before) < running
    )


# --- versions with effective dates ---------------------------------------------------------------

VERSIONS = """\
order_retention: P180D
freezes: [{from: '2027-02-01T00:00:00Z', to: '2027-02-02T00:00:00Z'}]
versions:
  - deadlines: {merchant_review: PT48H}
  - effective_from: 2027-03-01T00:00:00+08:00
    deadlines: {merchant_review: PT36H}
  - effective_from: '2027-06-01T00:00:00Z'
    reminders: {merchant_review: []}
"""


def test_versions_inherit_from_the_one_before_and_share_the_files_keys(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, VERSIONS))
    march = datetime(2027, 2, 28, 16, tzinfo=UTC)
    june = datetime(2027, 6, 1, tzinfo=UTC)
    assert policy.effective_from is None
    assert [v.effective_from for v in policy.versions] == [march, june]
    assert policy.version_at(march - MICRO) is policy
    second, third = policy.versions
    assert policy.version_at(march) is second
    assert policy.version_at(june + 100 * D) is third
    assert third.deadlines["merchant_review"] == timedelta(hours=36)  # kept from the second
    assert third.reminders["merchant_review"] == ()
    assert second.reminders == policy.reminders
    for version in (policy, second, third):
        assert version.order_retention == timedelta(days=180)
        assert version.freezes == ((T, T + D),)
    # a case keeps its version; one whose version was edited away takes the one in force then
    assert policy.version_of(march) is second
    assert policy.version_of(None) is policy
    assert policy.version_of(march + D) is second


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("versions: []", "versions must be a non-empty list"),
        ("versions: [{deadlines: {}}]\ndeadlines: {}", "deadlines belongs in a version"),
        ("versions: [{}, {deadlines: {}}]", r"versions\[2\]: effective_from is required"),
        (
            "versions: [{}, {effective_from: '2027-02-01T00:00:00Z'},"
            " {effective_from: '2027-02-01T00:00:00Z'}]",
            r"versions\[3\]: effective_from must be after the previous",
        ),
        ("versions: [{freezes: []}]", r"versions\[1\]: unknown key 'freezes'"),
        ("versions: [{effective_from: soon}]", r"versions\[1\]: effective_from: not an RFC"),
        ("versions: [{deadlines: {merchant_review: 0}}]", "must be positive"),
    ],
)
def test_bad_versions_are_refused_naming_the_entry(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        load_policy(write(tmp_path, text + "\n"))


def test_one_version_in_a_list_is_the_plain_file(tmp_path: Path) -> None:
    plain = load_policy(write(tmp_path, "deadlines: {buyer_return: P7D}\n"))
    listed = load_policy(write(tmp_path, "versions: [{deadlines: {buyer_return: P7D}}]\n"))
    assert listed == plain


# --- what a running worker may take from a changed file ------------------------------------------

NOW = datetime(2027, 3, 1, tzinfo=UTC)


def versions(*changes: tuple[datetime, str]) -> Policy:
    """The default policy, then a version of each (effective_from, merchant_review)."""
    return policy_from_mapping(
        {
            "versions": [
                {},
                *(
                    {"effective_from": at.isoformat(), "deadlines": {"merchant_review": review}}
                    for at, review in changes
                ),
            ]
        }
    )


@pytest.mark.parametrize(
    ("new", "refused"),
    [
        (versions((NOW - D, "PT36H"), (NOW + D, "PT24H")), None),  # appended after the last
        (versions((NOW - D, "PT36H"), (NOW - MICRO, "PT24H")), "a version in force changed"),
        (versions((NOW - D, "PT12H")), "a version in force changed"),  # edited in place
        (versions(), "a version in force changed"),  # removed
        (
            replace(versions((NOW - D, "PT36H")), order_retention=D),
            "order_retention changed",
        ),
        (
            replace(
                versions((NOW - D, "PT36H")),
                freezes=((NOW + D, NOW + 2 * D),),
            ),
            None,  # a freeze ahead
        ),
        (
            replace(
                versions((NOW - D, "PT36H")),
                freezes=((NOW - D, NOW + D),),
            ),
            "a freeze before now changed",
        ),
    ],
)
def test_a_running_worker_takes_only_what_moves_nothing_running(
    new: Policy, refused: str | None
) -> None:
    old = versions((NOW - D, "PT36H"))
    why = reload_refusal(old, new, NOW)
    if refused is None:
        assert why is None
    else:
        assert why is not None
        assert why.startswith(refused)


def test_a_first_version_change_taking_effect_later_is_taken() -> None:
    assert reload_refusal(versions(), versions((NOW + MICRO, "PT24H")), NOW) is None
    assert reload_refusal(versions(), versions((NOW, "PT24H")), NOW) is not None


@pytest.mark.parametrize(
    ("text", "limit"),
    [("max_cases_per_order: 5", 5), ("max_cases_per_order: null", None), ("{}", None)],
)
def test_max_cases_per_order(tmp_path: Path, text: str, limit: int | None) -> None:
    assert load_policy(write(tmp_path, text + "\n")).max_cases_per_order == limit


@pytest.mark.parametrize("value", ["0", "-1", "2.5", "true", "five"])
def test_max_cases_per_order_is_a_whole_number_from_one(tmp_path: Path, value: str) -> None:
    with pytest.raises(PolicyError, match="max_cases_per_order must be a whole number >= 1"):
        load_policy(write(tmp_path, f"max_cases_per_order: {value}\n"))
