"""The campaign's own broker: `deploy/local/stack` on other ports and another folder, so that
killing it disturbs nothing else (the local stack of the other tests keeps running)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.repo import ROOT

STACK = ROOT / "deploy" / "local" / "stack"
CHAOS_ENV = {
    "STACK_DIR": str(ROOT / ".stack-chaos"),
    "KAFKA_PORT": "29092",
    "KAFKA_CONTROLLER_PORT": "29093",
    "REDIS_PORT": "26379",
}
BOOTSTRAP = f"127.0.0.1:{CHAOS_ENV['KAFKA_PORT']}"


class StackError(RuntimeError):
    """`deploy/local/stack` failed."""


@dataclass
class ChaosStack:
    """`deploy/local/stack` with the campaign's environment."""

    folder: Path = Path(CHAOS_ENV["STACK_DIR"])
    bootstrap: str = BOOTSTRAP

    def env(self) -> dict[str, str]:
        env = dict(os.environ, **CHAOS_ENV, PYTHON=sys.executable)
        env["STACK_DIR"] = str(self.folder)
        return env

    async def run(self, *args: str, within: float = 300.0) -> str:
        """`stack ARGS...`; its output, or StackError with it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        # The folder holds the broker's data and the runs' logs: never a thing for git.
        ignore = self.folder / ".gitignore"
        if not ignore.exists():
            ignore.write_text("*\n")
        process = await asyncio.create_subprocess_exec(
            str(STACK),
            *args,
            env=self.env(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            out, _ = await asyncio.wait_for(process.communicate(), within)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise StackError(f"stack {' '.join(args)}: no answer within {within:g} s") from None
        text = out.decode(errors="replace")
        if process.returncode != 0:
            raise StackError(f"stack {' '.join(args)} exited {process.returncode}:\n{text}")
        return text

    async def up(self) -> str:
        return await self.run("up")

    async def down(self) -> str:
        return await self.run("down")

    def broker_pid(self) -> int | None:
        """The pid of the campaign's broker, if it runs (checked against its command line)."""
        try:
            pid = int((self.folder / "run" / "kafka.pid").read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, ValueError, IndexError):
            return None
        if b"kafka.Kafka" not in cmdline or str(self.folder).encode() not in cmdline:
            return None
        return None if state == "Z" else pid

    async def kill_broker(self) -> int:
        """SIGKILL the broker; returns its pid once it is gone."""
        pid = self.broker_pid()
        if pid is None:
            raise StackError("the campaign's broker is not running")
        os.kill(pid, signal.SIGKILL)
        # Gone (or a zombie) and its ports closed: a JVM takes a moment to die, and `stack up`
        # refuses a port still taken.
        deadline = time.monotonic() + 30
        while _alive(pid) or await _listening(self.bootstrap):
            if time.monotonic() > deadline:
                raise StackError(f"broker pid {pid} still alive 30 s after SIGKILL")
            await asyncio.sleep(0.05)
        return pid


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


async def _listening(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 1)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True
