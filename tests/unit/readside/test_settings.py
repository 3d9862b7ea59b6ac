"""Read-side settings from the environment: defaults, parsing, refusals, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.errors import ConfigError
from streams.live.settings import Settings
from streams.readside.settings import (
    ReadSettings,
    RedisUrl,
    key_prefix,
    markdown_table,
    status_topic,
)
from tests.repo import README


def test_defaults_run_locally() -> None:
    settings = ReadSettings.from_env({})
    assert settings.redis_url == RedisUrl("redis://127.0.0.1:6379/0")
    assert (settings.api_bind, settings.api_port) == ("127.0.0.1", 8080)
    assert settings.rate_min_paid == 20
    worker = Settings.from_env({"AFTERSALE_APP_ID": "app"})
    assert settings.group(worker) == "app-projector"
    assert status_topic(worker) == "app-status"
    assert key_prefix(worker) == "app:"
    assert ReadSettings.from_env({"AFTERSALE_PROJECTOR_GROUP": "g"}).group(worker) == "g"


def test_passwords_never_print() -> None:
    settings = ReadSettings.from_env(
        {
            "AFTERSALE_REDIS_URL": "rediss://reader:hunter2@redis.internal:6380/2",
            "AFTERSALE_REDIS_PASSWORD": "swordfish",
        }
    )
    assert settings.redis_url.tls
    assert settings.redis_url.redacted == "rediss://reader:****@redis.internal:6380/2"
    for text in (repr(settings), str(settings), str(settings.redis_url)):
        assert "hunter2" not in text
        assert "swordfish" not in text
    assert RedisUrl("redis://h:1/0").redacted == "redis://h:1/0"
    assert RedisUrl("redis://:pw@[::1]:6379/0").redacted == "redis://:****@[::1]:6379/0"
    with pytest.raises(ConfigError) as refused:
        ReadSettings.from_env({"AFTERSALE_REDIS_URL": "http://u:hunter2@h"})
    assert "hunter2" not in str(refused.value)
    assert "AFTERSALE_REDIS_URL=****" in str(refused.value)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AFTERSALE_REDIS_URL": "redis://"}, "must name a host"),
        ({"AFTERSALE_REDIS_URL": "redis://h:99999/0"}, "not a Redis URL"),
        ({"AFTERSALE_API_PORT": "0"}, "must be a TCP port"),
        ({"AFTERSALE_API_BIND": "localhost"}, "must be an IP address"),
        ({"AFTERSALE_RATE_MIN_PAID": "0"}, "AFTERSALE_RATE_MIN_PAID='0'"),
        ({"AFTERSALE_RATE_MAX_WINDOW_DAYS": "5000"}, "at most 3660"),
        ({"AFTERSALE_PROJECTOR_BATCH": "lots"}, "AFTERSALE_PROJECTOR_BATCH"),
        ({"AFTERSALE_REDIS_TIMEOUT": "-1"}, "positive number of seconds"),
        ({"AFTERSALE_REDIS_SSL_CAFILE": "/etc/hosts"}, "is not rediss://"),
        (
            {"AFTERSALE_REDIS_URL": "rediss://h", "AFTERSALE_REDIS_SSL_CAFILE": "/nonexistent"},
            "no such file: /nonexistent",
        ),
    ],
)
def test_bad_values_are_refused_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        ReadSettings.from_env(env)


def test_values_are_parsed(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-")
    settings = ReadSettings.from_env(
        {
            "AFTERSALE_REDIS_URL": "rediss://redis:6380/1",
            "AFTERSALE_REDIS_SSL_CAFILE": str(ca),
            "AFTERSALE_API_PORT": "9000",
            "AFTERSALE_API_BIND": "0.0.0.0",
            "AFTERSALE_PROJECTOR_BATCH": "500",
            "AFTERSALE_PROJECTOR_RETRY_MAX": "1.5",
        }
    )
    assert settings.redis_ssl_cafile == ca
    assert (settings.api_port, settings.api_bind) == (9000, "0.0.0.0")
    assert (settings.projector_batch, settings.projector_retry_max) == (500, 1.5)


def test_the_table_names_every_setting() -> None:
    table = markdown_table()
    assert "| `AFTERSALE_REDIS_URL` | `redis://127.0.0.1:6379/0` |" in table
    assert table.count("\n| `AFTERSALE_") == 11


def test_readme_read_side_table_matches_the_settings() -> None:
    assert markdown_table() in README.read_text(encoding="utf-8")
