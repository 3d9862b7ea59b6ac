"""`aftersale policy list|show`: the presets, as a user reads and copies them."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.rules import presets
from streams.rules.policy import resolve_policy
from streams.tools.cli import main


def test_list_shows_each_preset_with_its_marketplace(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["kuaishou", "taobao", "wechat"]
    assert "Taobao" in lines[1]


def test_show_prints_the_file_a_user_can_copy_and_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["policy", "show", "wechat"]) == 0
    shown = capsys.readouterr().out
    assert "用户上传退货物流超时 7天" in shown  # the sources come along
    copy = tmp_path / "mine.yaml"
    copy.write_text(shown, encoding="utf-8")
    assert resolve_policy(copy) == presets.load("wechat")


def test_show_of_an_unknown_preset_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "show", "jd"]) == 2
    assert capsys.readouterr().err == (
        "aftersale policy: error: no policy preset 'jd' (presets: kuaishou, taobao, wechat)\n"
    )


def test_policy_without_an_action_asks_for_one(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["policy"])
    assert exit_info.value.code == 2
    assert "ACTION" in capsys.readouterr().err
