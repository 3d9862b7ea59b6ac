"""`aftersale topics` connects as the worker does (against the real broker:
tests/integration/test_topics.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
from aiokafka.errors import KafkaConnectionError

from streams.tools import topics as topics_cli
from streams.tools.cli import main


class RefusedAdmin:
    """An admin client that records how it was built and cannot connect."""

    built: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, **options: Any) -> None:
        RefusedAdmin.built.append(options)

    async def start(self) -> None:
        raise KafkaConnectionError("refused")


@pytest.fixture
def admin(monkeypatch: pytest.MonkeyPatch) -> type[RefusedAdmin]:
    RefusedAdmin.built = []
    monkeypatch.setattr(topics_cli, "AIOKafkaAdminClient", RefusedAdmin)
    return RefusedAdmin


def test_sasl_and_ssl_settings_reach_the_admin_client(
    admin: type[RefusedAdmin], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AFTERSALE_KAFKA_BOOTSTRAP", "kafka-1:9093")
    monkeypatch.setenv("AFTERSALE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("AFTERSALE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("AFTERSALE_KAFKA_SASL_USERNAME", "ops")
    monkeypatch.setenv("AFTERSALE_KAFKA_SASL_PASSWORD", "s3cret")
    assert main(["topics", "check"]) == 2
    [options] = admin.built
    assert options["bootstrap_servers"] == "kafka-1:9093"
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("ops", "s3cret")
    assert options["ssl_context"] is not None
    err = capsys.readouterr().err
    assert err.startswith("aftersale topics: error: Kafka at kafka-1:9093")
    assert "s3cret" not in err


def test_bootstrap_flag_wins_over_the_environment(
    admin: type[RefusedAdmin], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AFTERSALE_KAFKA_BOOTSTRAP", "kafka-1:9093")
    assert main(["topics", "check", "--bootstrap", "127.0.0.1:9"]) == 2
    assert admin.built[0]["bootstrap_servers"] == "127.0.0.1:9"


def test_bad_settings_are_one_line(
    admin: type[RefusedAdmin], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AFTERSALE_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")  # no mechanism
    assert main(["topics", "create"]) == 2
    assert admin.built == []
    err = capsys.readouterr().err
    assert "AFTERSALE_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT needs" in err
    assert err.count("\n") == 1


def test_a_policy_file_not_written_yet_does_not_stop_it(
    admin: type[RefusedAdmin], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # the demo names the worker's policy file before it writes it, and makes topics first
    monkeypatch.setenv("AFTERSALE_POLICY_FILE", str(tmp_path / "later.yaml"))
    assert main(["topics", "check", "--bootstrap", "127.0.0.1:9"]) == 2
    assert len(admin.built) == 1
