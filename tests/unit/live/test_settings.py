"""Worker settings from the environment: defaults, parsing, refusals, the README's table."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.errors import ConfigError
from streams.live.settings import Secret, Settings, markdown_table
from tests.repo import README


def test_defaults_run_locally() -> None:
    settings = Settings.from_env({})
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.store == "rocksdb"
    assert settings.processing_guarantee == "exactly_once"
    assert settings.partitions == 12
    assert settings.web_bind == "127.0.0.1"


def test_environment_values_are_parsed() -> None:
    settings = Settings.from_env(
        {
            "AFTERSALE_PARTITIONS": "3",
            "AFTERSALE_STORE": "memory",
            "AFTERSALE_TICK_INTERVAL": "0.05",
            "AFTERSALE_DATA_DIR": "/tmp/x",
            "AFTERSALE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "AFTERSALE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "AFTERSALE_KAFKA_SASL_USERNAME": "svc",
            "AFTERSALE_KAFKA_SASL_PASSWORD": "hunter2",
            "AFTERSALE_WEB_BIND": "0.0.0.0",
        }
    )
    assert settings.web_bind == "0.0.0.0"
    assert (settings.partitions, settings.store, settings.tick_interval) == (3, "memory", 0.05)
    assert settings.data_dir == Path("/tmp/x")
    assert settings.kafka_sasl_password == Secret("hunter2")
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.kafka_sasl_password)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AFTERSALE_PARTITIONS": "zero"}, "AFTERSALE_PARTITIONS='zero'"),
        ({"AFTERSALE_PARTITIONS": "0"}, "must be a whole number >= 1"),
        ({"AFTERSALE_STORE": "redis"}, "must be one of rocksdb, memory"),
        ({"AFTERSALE_WEB_PORT": "70000"}, "must be a TCP port"),
        ({"AFTERSALE_WEB_BIND": "localhost"}, "must be an IP address"),
        ({"AFTERSALE_TICK_INTERVAL": "nan"}, "positive number of seconds"),
        ({"AFTERSALE_PROCESSING_GUARANTEE": "maybe"}, "exactly_once, at_least_once"),
        ({"AFTERSALE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs AFTERSALE_KAFKA_SASL_MECHANISM"),
        ({"AFTERSALE_KAFKA_SASL_MECHANISM": "PLAIN"}, "KAFKA_SECURITY_PROTOCOL is PLAINTEXT"),
        ({"AFTERSALE_POLICY_FILE": "/nonexistent.yaml"}, "no such file: /nonexistent.yaml"),
        ({"AFTERSALE_POLICY": "jd"}, "AFTERSALE_POLICY='jd': must be one of kuaishou, taobao"),
        (
            {"AFTERSALE_POLICY": "taobao", "AFTERSALE_POLICY_FILE": "/etc/hosts"},
            "AFTERSALE_POLICY and AFTERSALE_POLICY_FILE are both set",
        ),
    ],
)
def test_bad_values_are_refused_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        Settings.from_env(env)


def test_overrides_win() -> None:
    settings = Settings.from_env({"AFTERSALE_PARTITIONS": "3"}, partitions=5)
    assert settings.partitions == 5
    assert settings.topic("order-events") == "order-events"
    assert Settings(topic_prefix="t-").topic("order-events") == "t-order-events"


def test_readme_configuration_table_matches_the_settings() -> None:
    assert markdown_table() in README.read_text(encoding="utf-8")
