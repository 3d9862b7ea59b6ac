"""topics/topics.yaml read into specs: the five contract topics, overrides, co-partitioning."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.contract.topics import load_topic_specs
from streams.errors import ConfigError


def test_the_five_contract_topics_co_partitioned() -> None:
    specs = {s.name: s for s in load_topic_specs()}
    assert sorted(specs) == [
        "aftersale-actions",
        "aftersale-deadletter",
        "aftersale-events",
        "aftersale-notifications",
        "order-events",
    ]
    assert specs["order-events"].partitions == specs["aftersale-events"].partitions
    assert specs["aftersale-actions"].configs["cleanup.policy"] == "delete"
    assert all(isinstance(v, str) for s in specs.values() for v in s.configs.values())


def test_overrides_and_prefix() -> None:
    specs = load_topic_specs(partitions=3, replication_factor=2, prefix="p-")
    assert {(s.partitions, s.replication_factor) for s in specs} == {(3, 2)}
    assert all(s.name.startswith("p-") for s in specs)


def test_inputs_with_different_partition_counts_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "topics.yaml"
    path.write_text(
        "topics:\n"
        "  order-events: {role: input, partitions: 3}\n"
        "  aftersale-events: {role: input, partitions: 4}\n"
    )
    with pytest.raises(ConfigError, match="same partition count"):
        load_topic_specs(path)


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read topic definitions"):
        load_topic_specs(tmp_path / "nope.yaml")
