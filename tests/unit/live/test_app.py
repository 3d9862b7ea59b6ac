"""`streams.live.app.build_app`: the faust app takes its settings from AFTERSALE_* only, and
runs exactly-once (its consumer reads committed records only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from faust.types.enums import ProcessingGuarantee

from streams.live.app import build_app, worker_policy
from streams.live.settings import Settings
from streams.rules import presets
from streams.rules.policy import Policy


def test_faust_own_environment_variables_do_not_override_the_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # what a Kubernetes service link or a stray variable puts into the environment
    monkeypatch.setenv("WEB_PORT", "tcp://10.0.0.1:6066")
    monkeypatch.setenv("PROCESSING_GUARANTEE", "at_least_once")
    monkeypatch.setenv("TOPIC_PARTITIONS", "3")
    monkeypatch.setenv("APP_DATADIR", "/elsewhere")
    settings = Settings.from_env(
        {"AFTERSALE_WEB_PORT": "7001", "AFTERSALE_PARTITIONS": "6", "AFTERSALE_WEB_BIND": "::"},
        data_dir=tmp_path,
    )
    conf = build_app(settings).conf
    guarantee: Any = conf.processing_guarantee  # faust types the setting as the enum class
    assert guarantee is ProcessingGuarantee.EXACTLY_ONCE
    assert (conf.web_port, conf.web_bind) == (7001, "::")
    assert conf.topic_partitions == 6
    assert Path(conf.datadir) == tmp_path


def test_the_state_changelog_takes_the_replication_factor_given(tmp_path: Path) -> None:
    # faust declares the changelog with this when the topic does not exist yet
    app = build_app(Settings.from_env({}, data_dir=tmp_path), replication=3)
    assert app.conf.topic_replication_factor == 3


async def test_the_worker_reads_only_committed_input(tmp_path: Path) -> None:
    # faust picks read_committed only when the app runs as a worker: an upstream producer's
    # aborted transaction must never reach the engine
    app = build_app(Settings.from_env({}, data_dir=tmp_path))
    app.in_worker = True  # as `aftersale worker` (faust's Worker) runs it
    thread: Any = app.consumer._thread  # type: ignore[attr-defined]
    consumer = thread._create_worker_consumer(app.transport)
    try:
        assert consumer._isolation_level == "read_committed"
        # a group left with no partition by a broker that answered before loading its topics
        # rebalances at the next refresh: within seconds, not aiokafka's 5 minutes
        assert consumer._client._metadata_max_age_ms <= 5_000
    finally:
        await consumer.stop()


def test_the_worker_runs_the_preset_or_the_file_it_is_given(tmp_path: Path) -> None:
    assert worker_policy(Settings.from_env({})) == Policy()
    taobao = worker_policy(Settings.from_env({"AFTERSALE_POLICY": "taobao"}))
    assert taobao == presets.load("taobao") != Policy()
    file = tmp_path / "policy.yaml"
    file.write_text("deadlines: {buyer_return: P3D}\n")
    mine = worker_policy(Settings.from_env({"AFTERSALE_POLICY_FILE": str(file)}))
    assert mine.deadlines["buyer_return"].days == 3
