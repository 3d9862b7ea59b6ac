"""`aftersale topics create|check` against the real broker, with unique topic names."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams.contract.topics import load_topic_specs
from streams.live.admin import (
    check_topics,
    create_topics,
    delete_topics_named,
    replication_factor,
    until_listed,
)
from streams.live.record_limits import output_needs, required_max_message_bytes
from streams.tools.cli import main
from tests.integration.endpoints import BOOTSTRAP


async def test_create_is_idempotent_and_check_passes(
    admin: AIOKafkaAdminClient, unique: str
) -> None:
    specs = load_topic_specs(prefix=f"{unique}-", partitions=2)
    created = await create_topics(admin, specs)
    assert sorted(created) == sorted(s.name for s in specs)
    assert await create_topics(admin, specs) == []
    reports = await check_topics(admin, specs)
    assert [r.problems for r in reports] == [()] * 5
    # one run's topics, and no other's
    assert await delete_topics_named(admin, f"{unique}-") == sorted(created)


async def test_replication_factor_reads_the_replicas_of_a_topic(
    admin: AIOKafkaAdminClient, unique: str
) -> None:
    # one broker here: 1 is the only factor it can hold; a cluster's comes from the same field
    specs = load_topic_specs(prefix=f"{unique}-", partitions=3)
    created = await create_topics(admin, specs[:1])
    assert await replication_factor(admin, created[0]) == 1
    await admin.delete_topics(created)


async def test_check_names_partition_and_config_mismatches(
    admin: AIOKafkaAdminClient, unique: str
) -> None:
    specs = load_topic_specs(prefix=f"{unique}-", partitions=2)
    actions = next(s for s in specs if s.name.endswith("aftersale-actions"))
    await admin.create_topics(
        [NewTopic(actions.name, 3, 1, topic_configs={"retention.ms": "1000"})]
    )
    await until_listed(admin, {actions.name})  # creation returns before metadata has it
    reports = {r.name: r for r in await check_topics(admin, specs)}
    assert reports[actions.name].problems == (
        "has 3 partitions, expected 2",
        "retention.ms is '1000', expected '2592000000'",
    )
    assert reports[f"{unique}-order-events"].problems == ("missing",)
    await admin.delete_topics([actions.name])


def test_cli_create_then_check(unique: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--bootstrap", BOOTSTRAP, "--prefix", f"{unique}-", "--partitions", "1"]
    assert main(["topics", "check", *args]) == 1
    assert f"MISMATCH {unique}-order-events: missing" in capsys.readouterr().err
    assert main(["topics", "create", *args]) == 0
    out = capsys.readouterr().out
    assert f"created {unique}-aftersale-deadletter" in out
    assert main(["topics", "check", *args]) == 0
    assert main(["topics", "check", *args[:-1], "2"]) == 1
    assert "has 1 partitions, expected 2" in capsys.readouterr().err


def test_cli_takes_prefix_and_partitions_from_the_worker_settings(
    unique: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AFTERSALE_KAFKA_BOOTSTRAP", BOOTSTRAP)
    monkeypatch.setenv("AFTERSALE_TOPIC_PREFIX", f"{unique}-")
    monkeypatch.setenv("AFTERSALE_PARTITIONS", "3")
    assert main(["topics", "create"]) == 0
    assert f"created {unique}-order-events" in capsys.readouterr().out
    assert main(["topics", "check", "--partitions", "3", "--prefix", f"{unique}-"]) == 0
    assert main(["topics", "check", "--partitions", "2"]) == 1
    assert f"{unique}-order-events: has 3 partitions, expected 2" in capsys.readouterr().err


def test_cli_unreachable_broker_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topics", "check", "--bootstrap", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aftersale topics: error: Kafka at 127.0.0.1:1")
    assert err.count("\n") == 1


async def test_check_names_an_output_topic_too_small_for_the_largest_record(
    admin: AIOKafkaAdminClient, unique: str, capsys: pytest.CaptureFixture[str]
) -> None:
    specs = load_topic_specs(prefix=f"{unique}-", partitions=1)
    await create_topics(admin, specs)
    deadletter = f"{unique}-aftersale-deadletter"
    spec = next(s for s in specs if s.name == deadletter)
    # below a dead letter of a 64 KiB original (escaped), and a full batch (alter_configs
    # replaces every config of the topic: the spec's stay)
    lowered = {**spec.configs, "max.message.bytes": "300000"}
    await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, deadletter, lowered)])
    need = required_max_message_bytes("aftersale-deadletter")
    reports = {r.name: r for r in await check_topics(admin, specs, output_needs(f"{unique}-"))}
    assert reports[deadletter].problems == (
        f"max.message.bytes is 300000, below the {need} bytes the worker may write in one batch "
        "(the largest record the contract's bounds allow, or a full batch): raise it to at "
        f"least {need}",
    )
    assert [r.problems for r in reports.values() if r.name != deadletter] == [()] * 4
    args = ["--bootstrap", BOOTSTRAP, "--prefix", f"{unique}-", "--partitions", "1"]
    assert await asyncio.to_thread(main, ["topics", "check", *args]) == 1  # the CLI says so too
    assert f"MISMATCH {deadletter}: max.message.bytes is 300000" in capsys.readouterr().err
    await delete_topics_named(admin, f"{unique}-")
