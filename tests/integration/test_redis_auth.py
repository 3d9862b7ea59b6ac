"""The read side against a Redis with `requirepass` behind TLS: the right password and CA work
end to end; a wrong or missing password, or a server the CA does not trust, is one clear line
and exit 2 from `aftersale project` and `aftersale api`; no secret appears in any output."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from streams.readside.redis_store import RedisStore
from tests.integration.test_api import ApiProcess, get
from tests.integration.test_readside import (
    ProjectorProcess,
    StatusTopic,
    assert_redis_is_the_projection,
    caught_up,
    status_feed,
)
from tests.integration.worker_harness import free_port, wait_for

PASSWORD = "redis-s3cret-Q7"
WRONG = "not-the-redis-password-Z9"
SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_certificates(folder: Path) -> None:
    """A CA of the test's own, and a server certificate it signed for 127.0.0.1."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA",
            "-keyout", str(folder / "ca.key"), "-out", str(folder / "ca.pem"))  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", str(folder / "server.key"), "-out", str(folder / "server.csr"))  # fmt: skip
    openssl("x509", "-req", "-days", "2", "-in", str(folder / "server.csr"),
            "-CA", str(folder / "ca.pem"), "-CAkey", str(folder / "ca.key"), "-CAcreateserial",
            "-extfile", str(folder / "san.cnf"), "-out", str(folder / "server.pem"))  # fmt: skip


@dataclass
class TlsRedis:
    """A redis-server of the test's own: TLS only (no plaintext port), a password required."""

    folder: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def ca(self) -> str:
        return str(self.folder / "ca.pem")

    def url(self, password: str | None = PASSWORD) -> str:
        auth = f":{password}@" if password else ""
        return f"rediss://{auth}127.0.0.1:{self.port}/0"

    def spawn(self) -> None:
        make_certificates(self.folder)
        with (self.folder / "redis.log").open("ab") as out:
            self.process = subprocess.Popen(
                ["redis-server", "--port", "0", "--tls-port", str(self.port),
                 "--bind", "127.0.0.1", "--dir", str(self.folder), "--save", "",
                 "--tls-cert-file", str(self.folder / "server.pem"),
                 "--tls-key-file", str(self.folder / "server.key"),
                 "--tls-ca-cert-file", self.ca, "--tls-auth-clients", "no",
                 "--requirepass", PASSWORD],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    async def start(self) -> None:
        """Start it and wait until it answers."""
        self.spawn()
        client = self.client()

        async def answers() -> bool:
            try:
                return bool(await client.ping())
            except aioredis.RedisError:
                return False

        try:
            await wait_for(answers, f"redis-server (TLS) on port {self.port}", 15.0, every=0.05)
        finally:
            await client.aclose()

    def client(self) -> aioredis.Redis:
        return aioredis.from_url(self.url(), ssl_ca_certs=self.ca)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
async def tls_redis(tmp_path: Path) -> AsyncIterator[TlsRedis]:
    server = TlsRedis(tmp_path / "redis")
    await server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def processes() -> Iterator[list[ProjectorProcess | ApiProcess]]:
    started: list[ProjectorProcess | ApiProcess] = []
    yield started
    for one in started:
        if one.process is not None and one.process.poll() is None:
            one.process.kill()
            one.process.wait(10)


def secrets_absent(text: str) -> None:
    assert PASSWORD not in text
    assert WRONG not in text


async def test_the_projector_and_the_api_work_over_tls_with_the_password(
    unique: str, tmp_path: Path, tls_redis: TlsRedis, processes: list[ProjectorProcess | ApiProcess]
) -> None:
    tls = {"AFTERSALE_REDIS_SSL_CAFILE": tls_redis.ca}
    feed = status_feed(tmp_path, orders=40)
    status = StatusTopic(unique)
    await status.create()
    projector = ProjectorProcess(unique, tls_redis.url(), tmp_path, extra_env=tls)
    processes.append(projector)
    projector.start()
    async with status:
        await status.write(feed)
    client = tls_redis.client()
    store = RedisStore(client, f"{unique}:", status.name)
    try:
        await caught_up(store, status, projector)
        await assert_redis_is_the_projection(store, status)
    finally:
        await client.aclose()
    assert projector.kill(15) == 0

    api = ApiProcess(unique, tls_redis.url(), tmp_path / "api.log", extra_env=tls)
    processes.append(api)
    async with aiohttp.ClientSession() as session:
        await api.start(session)
        assert await get(session, api, "/readyz", "/readyz", 200) == {"status": "ready"}
        some_order = next(iter(status.projection.snapshot().orders))
        body = await get(session, api, f"/orders/{some_order}", "/orders/{order_id}", 200)
        assert body["order_id"] == some_order
    assert api.stop() == 0
    secrets_absent(projector.logs() + api.log.read_text(errors="replace"))


def run_command(
    command: str, unique: str, url: str, cafile: str
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AFTERSALE_APP_ID": unique, "AFTERSALE_REDIS_URL": url,
           "AFTERSALE_REDIS_SSL_CAFILE": cafile, "AFTERSALE_API_PORT": str(free_port()),
           "AFTERSALE_REDIS_TIMEOUT": "3"}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "streams.tools.cli", command],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def error_lines(run: subprocess.CompletedProcess[str]) -> list[str]:
    """Every line of stderr that is not an ordinary INFO log line."""
    return [line for line in run.stderr.splitlines() if "] [INFO] " not in line]


@pytest.mark.parametrize("command", ["project", "api"])
def test_refused_credentials_or_certificates_are_one_line_and_exit_2(
    command: str, unique: str, tls_redis: TlsRedis
) -> None:
    cases = {
        "wrong password": (tls_redis.url(WRONG), tls_redis.ca, "invalid username-password pair"),
        "no password": (tls_redis.url(None), tls_redis.ca, "AuthenticationError"),
        "untrusted server": (tls_redis.url(), SYSTEM_CA, "CERTIFICATE_VERIFY_FAILED"),
    }
    for case, (url, cafile, says) in cases.items():
        run = run_command(command, unique, url, cafile)
        assert run.returncode == 2, (case, run.stderr)
        lines = error_lines(run)
        assert len(lines) == 1, (case, run.stderr)
        assert lines[0].startswith(f"aftersale {command}: error: Redis at rediss://"), lines
        assert "refused this client" in lines[0]
        assert says in lines[0], (case, lines[0])
        secrets_absent(run.stdout + run.stderr)
