"""The policy presets: each loads, the seed's is the contract's default, and every number in
them says where it comes from."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from streams.errors import PolicyError
from streams.rules import presets
from streams.rules.policy import Policy, resolve_policy


def test_the_kuaishou_preset_is_the_contracts_default_policy() -> None:
    assert presets.load("kuaishou") == Policy()


@pytest.mark.parametrize("name", presets.NAMES)
def test_each_preset_loads_and_names_its_marketplace(name: str) -> None:
    assert isinstance(presets.load(name), Policy)
    assert presets.title(name)
    assert resolve_policy(name) == presets.load(name)


def test_the_presets_differ_where_the_marketplaces_do() -> None:
    kuaishou, taobao, wechat = (presets.load(name) for name in ("kuaishou", "taobao", "wechat"))
    assert wechat.deadlines["buyer_return"] < kuaishou.deadlines["buyer_return"]  # 7 vs 10 days
    assert taobao.deadlines["merchant_review"] > kuaishou.deadlines["merchant_review"]


@pytest.mark.parametrize("name", presets.NAMES)
def test_every_number_has_a_source_or_says_it_was_chosen(name: str) -> None:
    lines = presets.text(name).splitlines()
    listed = {
        match[1]: match[2] for line in lines if (match := re.match(r"#   \[(\d+)\] (.*)", line))
    }
    assert listed
    assert all("http" in source for source in listed.values())
    assert set(re.findall(r"\[(\d+)\]", presets.text(name))) <= set(listed)  # all listed
    # A value's source is in the comment right above it, or above the key it sits under (the
    # file's opening comment, its list of sources, counts for nothing).
    comment: list[str] = []
    parent: list[str] = []
    keys = values = 0
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped)
            continue
        if not stripped:
            continue
        if keys == 0:
            comment = []  # the opening comment
        keys += 1
        if stripped.endswith(":"):
            parent, comment = comment, []
            continue
        if not line.startswith(" "):
            parent = []
        values += 1
        said = " ".join(comment or parent)
        cited = set(re.findall(r"\[(\d+)\]", said))
        assert cited or "chosen" in said.lower(), f"{name}: {stripped!r} has no source"
        assert cited <= set(listed), f"{name}: {stripped!r} cites an unlisted source"
        comment = []
    data = yaml.safe_load(presets.text(name))
    nested = sum(len(v) for v in data.values() if isinstance(v, dict))
    assert values == nested + sum(not isinstance(v, dict) for v in data.values())


def test_an_unknown_preset_names_the_known_ones() -> None:
    with pytest.raises(PolicyError, match="no policy preset 'jd' \\(presets: kuaishou, taobao"):
        presets.text("jd")
    with pytest.raises(PolicyError, match="or a preset: kuaishou, taobao, wechat"):
        resolve_policy("kuaishoo")


def test_a_file_named_like_a_preset_is_read_by_its_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kuaishou").write_text("deadlines: {merchant_review: PT1H}\n")
    assert resolve_policy("kuaishou") == Policy()  # the bare name: the preset
    mine = resolve_policy("./kuaishou")
    assert mine.deadlines["merchant_review"].total_seconds() == 3600
