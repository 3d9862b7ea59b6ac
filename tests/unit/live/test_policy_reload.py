"""The worker's policy file read again when it changes: taken, refused or invalid."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from streams.live.policy_reload import PolicyFile
from streams.rules.policy import Policy, load_policy

NOW = datetime(2027, 3, 1, tzinfo=UTC)
LATER = "versions: [{}, {effective_from: '2027-03-02T00:00:00Z', deadlines: {buyer_return: P7D}}]\n"
EARLIER = (
    "versions: [{}, {effective_from: '2027-02-01T00:00:00Z', deadlines: {buyer_return: P7D}}]\n"
)


def write(path: Path, text: str) -> None:
    """Write the file as an editor does, and move its mtime on (a coarse clock must not hide
    the change)."""
    path.write_text(text, encoding="utf-8")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


@pytest.fixture
def watched(tmp_path: Path) -> PolicyFile:
    path = tmp_path / "policy.yaml"
    write(path, "deadlines: {merchant_review: PT48H}\n")
    return PolicyFile(path, load_policy(path))


def test_an_unchanged_file_gives_nothing(watched: PolicyFile) -> None:
    assert watched.poll(NOW) is None
    assert watched.outcomes == {"taken": 0, "refused": 0, "invalid": 0}


def test_a_version_that_takes_effect_later_is_taken(watched: PolicyFile) -> None:
    write(watched.path, LATER)
    new = watched.poll(NOW)
    assert new is not None
    assert new.version_at(NOW + timedelta(days=1)).deadlines["buyer_return"].days == 7
    assert watched.policy is new
    assert watched.outcomes["taken"] == 1
    assert watched.poll(NOW) is None  # seen once


def test_a_version_that_took_effect_already_is_refused_until_a_restart(
    watched: PolicyFile, caplog: pytest.LogCaptureFixture
) -> None:
    write(watched.path, EARLIER)
    assert watched.poll(NOW) is None
    assert watched.policy == Policy()
    assert watched.outcomes["refused"] == 1
    assert "is not taken: a version in force changed" in caplog.text


def test_a_broken_file_is_logged_and_the_policy_kept(
    watched: PolicyFile, caplog: pytest.LogCaptureFixture
) -> None:
    write(watched.path, "deadlines: [\n")
    assert watched.poll(NOW) is None
    assert watched.outcomes["invalid"] == 1
    assert "not valid YAML" in caplog.text
    write(watched.path, LATER)  # fixed: taken
    assert watched.poll(NOW) is not None


def test_a_configmap_update_swapping_the_mounted_file_is_seen(tmp_path: Path) -> None:
    # A ConfigMap volume: policy.yaml -> ..data/policy.yaml, ..data -> a timestamped folder
    # that an update replaces by renaming a new symlink over ..data.
    first, second = tmp_path / "..2027_03_01", tmp_path / "..2027_03_02"
    for folder, text in ((first, "{}\n"), (second, LATER)):
        folder.mkdir()
        (folder / "policy.yaml").write_text(text, encoding="utf-8")
    (tmp_path / "..data").symlink_to(first.name)
    (tmp_path / "policy.yaml").symlink_to("..data/policy.yaml")
    watched = PolicyFile(tmp_path / "policy.yaml", Policy())
    assert watched.poll(NOW) is None
    (tmp_path / "..data_tmp").symlink_to(second.name)
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    new = watched.poll(NOW)
    assert new is not None
    assert len(new.versions) == 1
