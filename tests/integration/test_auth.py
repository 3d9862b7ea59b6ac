"""Kafka over SASL_SSL (SCRAM-SHA-512, TLS): right credentials work, wrong ones are one clear
line and a non-zero exit, and no secret appears in logs, metrics or error output."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable

import aiohttp

from tests.integration.endpoints import CA_FILE, SASL_BOOTSTRAP, SASL_PASSWORD, SASL_USER
from tests.integration.worker_harness import Env, Feeder, WorkerProcess, free_port, read_outputs

WRONG = "not-the-password-0xC0FFEE"


def sasl_env(password: str, cafile: str = CA_FILE) -> dict[str, str]:
    return {
        "AFTERSALE_KAFKA_BOOTSTRAP": SASL_BOOTSTRAP,
        "AFTERSALE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "AFTERSALE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "AFTERSALE_KAFKA_SASL_USERNAME": SASL_USER,
        "AFTERSALE_KAFKA_SASL_PASSWORD": password,
        "AFTERSALE_KAFKA_SSL_CAFILE": os.path.abspath(cafile),
    }


def aftersale(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_topics_over_sasl_ssl_with_the_right_and_the_wrong_credentials(unique: str) -> None:
    args = ("topics", "create", "--prefix", f"{unique}-", "--partitions", "1")
    ok = aftersale(*args, env=sasl_env(SASL_PASSWORD))
    assert ok.returncode == 0, ok.stderr
    assert f"created {unique}-order-events" in ok.stdout
    wrong = aftersale(*args, env=sasl_env(WRONG))
    assert wrong.returncode == 2
    assert wrong.stderr.count("\n") == 1, wrong.stderr  # one line
    assert "SaslAuthenticationFailed" in wrong.stderr
    assert "invalid credentials" in wrong.stderr
    untrusted = aftersale(*args, env=sasl_env(SASL_PASSWORD, "/etc/ssl/certs/ca-certificates.crt"))
    assert untrusted.returncode == 2
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
    for run in (ok, wrong, untrusted):
        assert SASL_PASSWORD not in run.stdout + run.stderr
        assert WRONG not in run.stdout + run.stderr


async def test_the_worker_runs_over_sasl_ssl_and_never_shows_its_password(
    env: Env, workers: Callable[..., WorkerProcess]
) -> None:
    # the env fixture made the topics over PLAINTEXT; the worker talks SASL_SSL only
    port = free_port()
    worker = workers(**sasl_env(SASL_PASSWORD), AFTERSALE_WEB_PORT=str(port))
    worker.start()
    await worker.wait_ready()
    async with Feeder(env.prefix) as feed:
        await feed.request(f"{env.prefix}o-1", "c-1", kind="refund_only")
    deadline = time.monotonic() + 60
    while not (await read_outputs(env.prefix, settle=0.5))["aftersale-actions"]:
        assert time.monotonic() < deadline, worker.tail()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
            metrics = await response.text()
        async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
            health = await response.text()
    worker.stop()
    log = worker.log.read_text(errors="replace")
    for text in (log, metrics, health):
        assert SASL_PASSWORD not in text
    assert "aftersale_auto_actions_total" in metrics


async def test_a_worker_with_the_wrong_password_stops_with_one_clear_line(
    env: Env, workers: Callable[..., WorkerProcess]
) -> None:
    worker = workers(**sasl_env(WRONG))
    worker.start()
    assert worker.process is not None
    code = await asyncio.to_thread(worker.process.wait, 60)
    assert code == 2
    log = worker.log.read_text(errors="replace")
    assert log.startswith("aftersale worker: error: Kafka at "), log
    assert log.count("\n") == 1, log
    assert "SaslAuthenticationFailed" in log
    assert WRONG not in log
