"""`aftersale worker` processes and their supervisor (the driver restarts a worker that exits
on its own, as Kubernetes would)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.repo import ROOT

AFTERSALE = ROOT / ".venv" / "bin" / "aftersale"
READY = b"Worker ready"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Exit:
    """A worker process that ended on its own (not killed by a fault): when and how."""

    worker: str
    at: float
    code: int
    log: Path


@dataclass
class Worker:
    """One worker: its instance id, data folder and environment outlive its processes."""

    name: str
    env: dict[str, str]
    folder: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    #: The driver took it down on purpose (a fault): the supervisor leaves it alone.
    held_down: bool = False
    started_at: float = 0.0
    web_port: int = 0
    _scanned: int = 0
    _ready: bool = False

    @property
    def log(self) -> Path:
        return self.folder / f"{self.name}-{self.starts}.log"

    def start(self) -> None:
        if self.running():
            return
        self.starts += 1
        self._scanned, self._ready = 0, False
        self.web_port = free_port()
        env = dict(os.environ, **self.env, AFTERSALE_WEB_PORT=str(self.web_port))
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [str(AFTERSALE), "worker"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started_at = time.monotonic()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def signal(self, sig: int) -> None:
        assert self.process is not None
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)

    async def wait_exit(self, within: float = 30.0) -> int:
        assert self.process is not None
        deadline = time.monotonic() + within
        while (code := self.process.poll()) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} (pid {self.process.pid}) did not exit")
            await asyncio.sleep(0.02)
        return code

    def ready(self) -> bool:
        """Whether the current process has said "Worker ready" (read on from where the last
        call stopped: a log fills fast while the broker is away)."""
        if self._ready:
            return True
        try:
            with self.log.open("rb") as log:
                log.seek(max(0, self._scanned - len(READY)))
                text = log.read()
        except OSError:
            return False
        self._scanned = max(0, self._scanned - len(READY)) + len(text)
        self._ready = READY in text
        return self._ready

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (SIGCONT first, in case it is paused), SIGKILL after `timeout`."""
        if self.process is None or self.process.poll() is not None:
            return
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Supervisor:
    """Restarts a worker whose process ended unless the driver holds it down, with a short
    back-off while it keeps ending within seconds (a broker that is away)."""

    workers: list[Worker]
    say: Callable[[str], None]
    exits: list[Exit] = field(default_factory=list)
    _backoff: dict[str, float] = field(default_factory=dict)

    async def run(self) -> None:
        while True:
            for worker in self.workers:
                code = worker.exit_code()
                if worker.held_down or code is None:
                    continue
                self.exits.append(Exit(worker.name, time.time(), code, worker.log))
                lived = time.monotonic() - worker.started_at
                backoff = self._backoff.get(worker.name, 0.0)
                backoff = 0.0 if lived > 30 else min(8.0, max(1.0, backoff * 2))
                self._backoff[worker.name] = backoff
                self.say(
                    f"supervisor: {worker.name} exited on its own (code {code}, after "
                    f"{lived:.1f} s; log {worker.log.name}); restarting in {backoff:g} s"
                )
                worker.held_down = True
                try:
                    await asyncio.sleep(backoff)
                    worker.start()
                finally:
                    worker.held_down = False
            await asyncio.sleep(0.1)
