"""deploy/prometheus with Prometheus' own tool: the rules load (`promtool check rules`), their unit
tests pass (`promtool test rules`), and the example configuration loads them (`promtool check
config`). promtool comes with Debian's `prometheus` package."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.repo import ROOT

PROMETHEUS = ROOT / "deploy" / "prometheus"
#: rules_test.yml at a minute's evaluation; rules_test_30d.yml the 30 d window, at an hour's
RULE_TESTS = sorted(PROMETHEUS.glob("rules_test*.yml"))


def promtool() -> str:
    """promtool's path; fails (never skips) the test without it."""
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(
            "promtool is not on PATH: install Debian's prometheus package "
            "(apt-get install prometheus), which ships it"
        )
    return found


def run(*args: str) -> None:
    """Runs promtool in deploy/prometheus; fails the test with its output unless it succeeds."""
    done = subprocess.run(
        [promtool(), *args],
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        command = " ".join(["promtool", *args])
        pytest.fail(f"{command} exited {done.returncode}:\n{done.stdout}{done.stderr}")


def test_the_rules_load() -> None:
    run("check", "rules", "rules.yml")


@pytest.mark.parametrize("tests", RULE_TESTS, ids=lambda path: path.name)
def test_the_rules_pass_their_unit_tests(tests: Path) -> None:
    run("test", "rules", tests.name)


def test_both_rule_test_files_are_found() -> None:
    assert [path.name for path in RULE_TESTS] == ["rules_test.yml", "rules_test_30d.yml"]


def test_the_example_configuration_loads_the_rules() -> None:
    run("check", "config", "prometheus.yml")
