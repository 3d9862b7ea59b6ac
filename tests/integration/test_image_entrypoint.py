"""The image's entrypoint as Kubernetes runs it, without Docker.

A virtualenv is built the way the Dockerfile's build stage builds /opt/aftersale (the files it
copies, `pip wheel`, a venv without pip, the wheel installed into it from outside), in a
temporary folder outside the checkout. Two workers run the Dockerfile's ENTRYPOINT + CMD (read
from the Dockerfile) with the final stage's ENV and the AFTERSALE_* environment the prod overlay
gives the worker StatefulSet's pods (read from `kustomize build`), changed only where this
machine differs: the local broker (PLAINTEXT, no Secrets), a unique topic prefix and app id,
their own data folder, web port and pod name. The topics are made first with `aftersale topics
create`, as a deployment's Strimzi KafkaTopics would.

SIGTERM to one: it exits within the manifests' terminationGracePeriodSeconds, and the other owns
every partition within a few seconds (the worker leaves the group on SIGTERM, LeaveGroup v3), not
after the 10 s session timeout. Meanwhile neither wrote anything outside its data folder (the
pods' root filesystem is read-only): not into the virtualenv, its working directory or $TMPDIR.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from streams.live.admin import delete_topics_named
from tests.integration.endpoints import BOOTSTRAP
from tests.integration.worker_harness import free_port
from tests.repo import ROOT
from tests.unit.deploy import test_image as image
from tests.unit.deploy import test_k8s as k8s

pytestmark = pytest.mark.integration

OVERLAY = "overlays/prod"
#: The image's paths (Dockerfile) and where they are on this machine.
IMAGE_VENV = image.VENV
#: After SIGTERM, the other worker must hold every partition well before a session timeout
#: (10 s) would have moved them: measured 0.3-0.7 s for the leave itself (static_leave.py).
TAKEOVER_WITHIN = 5.0


@dataclass
class Pod:
    name: str
    env: dict[str, str]
    workdir: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        return int(self.env["AFTERSALE_WEB_PORT"])

    def readyz(self) -> dict[str, Any] | None:
        """/readyz's JSON (200 or 503), None while the web server does not answer."""
        url = f"http://127.0.0.1:{self.port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                body: dict[str, Any] = json.loads(response.read())
        except urllib.error.HTTPError as error:
            body = json.loads(error.read())
        except OSError:
            return None
        return body

    def tail(self) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return f"--- {self.name} ({self.log}):\n" + "\n".join(lines[-30:])


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """/opt/aftersale as the Dockerfile's build stage makes it, outside the checkout."""
    work = tmp_path_factory.mktemp("image")
    assert not work.resolve().is_relative_to(ROOT)
    context = work / "src"  # the build stage's WORKDIR
    context.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.py[cod]", "*.egg-info")
    for args in image.stages()[0].all("COPY"):
        *sources, target = args.split()
        for source in sources:
            origin = ROOT / source.rstrip("/")
            where = context / target / origin.name if target.endswith("/") else context / target
            if origin.is_dir():
                shutil.copytree(origin, where, ignore=ignore)
            else:
                where.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, where)
    wheels, venv = work / "wheels", work / "opt-aftersale"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    run(*pip, "wheel", "--wheel-dir", str(wheels), str(context))
    run(sys.executable, "-m", "venv", "--without-pip", str(venv))
    (wheel,) = wheels.glob("aftersale_deadlines-*.whl")
    run(*pip, "--python", str(venv / "bin" / "python"), "install", "--no-index",
        "--find-links", str(wheels), str(wheel))  # fmt: skip
    assert not (venv / "bin" / "pip").exists()
    return venv


def run(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}{done.stderr}"


def manifest_env(pod_name: str) -> tuple[dict[str, Any], int]:
    """The worker pod's environment in the prod overlay, and its termination grace period."""
    docs = k8s.render(OVERLAY)
    statefulset = k8s.worker(docs)
    grace = int(k8s.pod_spec(statefulset)["terminationGracePeriodSeconds"])
    return k8s.environment(docs, statefulset, pod_name=pod_name), grace


def pod_env(venv: Path, workdir: Path, pod_name: str, unique: str, policy: Path) -> dict[str, str]:
    """The Dockerfile's ENV, then the manifests' env, then this machine's differences."""
    final = image.final_stage()
    image_home = final.last("WORKDIR")
    assert image_home is not None

    def here(value: str) -> str:
        return value.replace(IMAGE_VENV, str(venv)).replace(image_home, str(workdir))

    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "TMPDIR": str(workdir / "tmp"),  # the pods' /tmp (an emptyDir)
    }
    env = {key: here(value) for key, value in image.env_of(final, base).items()}
    manifests, _grace = manifest_env(pod_name)
    local: dict[str, str] = {
        "AFTERSALE_KAFKA_BOOTSTRAP": BOOTSTRAP,
        "AFTERSALE_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",  # SASL/TLS: tested elsewhere
        "AFTERSALE_KAFKA_SASL_MECHANISM": "",
        "AFTERSALE_APP_ID": f"{unique}-app",
        "AFTERSALE_TOPIC_PREFIX": f"{unique}-",
        "AFTERSALE_DATA_DIR": str(workdir / "data"),
        "AFTERSALE_POLICY_FILE": str(policy),
        "AFTERSALE_WEB_PORT": str(free_port()),
    }
    secrets_and_files = {"AFTERSALE_KAFKA_SASL_USERNAME", "AFTERSALE_KAFKA_SASL_PASSWORD"}
    secrets_and_files.add("AFTERSALE_KAFKA_SSL_CAFILE")
    for key, value in manifests.items():
        if key in secrets_and_files:
            continue
        assert isinstance(value, str), f"{key}: {value}"
        env[key] = local.get(key, value)
    assert set(local) <= set(manifests), "overriding what the manifests do not set"
    # unchanged from the manifests: what these tests are about
    assert env["AFTERSALE_INSTANCE_ID"] == pod_name
    assert env["AFTERSALE_WEB_BIND"] == "0.0.0.0"
    assert env["AFTERSALE_PARTITIONS"] == str(k8s.contract_partitions())
    return env


def policy_file(folder: Path) -> Path:
    """The policy the manifests' ConfigMap mounts."""
    docs = k8s.render(OVERLAY)
    maps = k8s.config_maps(docs)
    (data,) = [m["data"]["policy.yaml"] for m in maps.values() if "policy.yaml" in m["data"]]
    path = folder / "policy.yaml"
    path.write_text(data)
    return path


def wait_until(what: str, check: Any, within: float, pods: list[Pod]) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        for pod in pods:
            assert pod.process is not None
            if pod.process.poll() is not None:
                pytest.fail(f"{pod.name} exited ({pod.process.returncode}) while waiting for "
                            f"{what}\n{pod.tail()}")  # fmt: skip
        time.sleep(0.05)
    pytest.fail(f"not within {within} s: {what}\n" + "\n".join(pod.tail() for pod in pods))


@pytest.fixture
def pods(venv: Path, unique: str, tmp_path: Path) -> Iterator[list[Pod]]:
    """Two worker 'pods' of the StatefulSet (not started), stopped and cleaned up afterwards."""
    policy = policy_file(tmp_path)
    made = []
    for ordinal in (0, 1):
        name = f"aftersale-worker-{ordinal}"
        workdir = tmp_path / name
        (workdir / "data").mkdir(parents=True)
        (workdir / "tmp").mkdir()
        env = pod_env(venv, workdir, name, unique, policy)
        made.append(Pod(name, env, workdir, workdir / "worker.log"))
    yield made
    for pod in made:
        if pod.process is not None and pod.process.poll() is None:
            pod.process.kill()
            pod.process.wait(10)
    asyncio.run(_delete_topics(unique))


async def _delete_topics(unique: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await delete_topics_named(admin, f"{unique}-")
    finally:
        await admin.close()


def start(pod: Pod) -> None:
    command = image.command()
    executable = shutil.which(command[0], path=pod.env["PATH"])
    assert executable is not None
    assert Path(executable).parent == Path(pod.env["PATH"].split(":")[0]), "not the image's"
    with pod.log.open("wb") as out:
        pod.process = subprocess.Popen(
            [executable, *command[1:]],
            env=pod.env,
            cwd=pod.workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def files(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


def test_sigterm_hands_every_partition_to_the_other_worker_at_once(
    pods: list[Pod], venv: Path
) -> None:
    first, second = pods
    installed = files(venv)
    _env, grace = manifest_env(first.name)
    partitions = list(range(k8s.contract_partitions()))
    # the topics, as `aftersale topics create` makes them (from the image, the pod's settings)
    aftersale = shutil.which("aftersale", path=first.env["PATH"])
    assert aftersale is not None
    created = subprocess.run(
        [aftersale, "topics", "create"],
        env=first.env,
        cwd=first.workdir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert created.returncode == 0, created.stdout + created.stderr
    for pod in pods:
        start(pod)

    def both_ready_and_sharing() -> bool:
        states = [pod.readyz() for pod in pods]
        if any(state is None or not state["ready"] for state in states):
            return False
        held = [set(state["partitions"]) for state in states if state is not None]
        return all(held) and sorted(held[0] | held[1]) == partitions and not held[0] & held[1]

    wait_until("both workers ready, the partitions split between them", both_ready_and_sharing,
               45.0, pods)  # fmt: skip

    assert first.process is not None
    stopped_at = time.monotonic()
    first.process.send_signal(signal.SIGTERM)

    def second_holds_all() -> bool:
        state = second.readyz()
        return state is not None and state["partitions"] == partitions

    wait_until("the second worker holding every partition", second_holds_all, TAKEOVER_WITHIN,
               [second])  # fmt: skip
    took_over = time.monotonic() - stopped_at
    try:
        code = first.process.wait(timeout=max(0.1, grace - (time.monotonic() - stopped_at)))
    except subprocess.TimeoutExpired:
        pytest.fail(f"{first.name} still running {grace} s after SIGTERM (the grace period)\n"
                    f"{first.tail()}")  # fmt: skip
    exited = time.monotonic() - stopped_at
    assert code == 0, first.tail()
    ready = second.readyz()
    wait_until("the second worker ready again", lambda: (second.readyz() or {}).get("ready"),
               20.0, [second])  # fmt: skip
    print(  # shown with -s: the figures the grace period and this test's limits rest on
        f"\ntakeover {took_over:.2f} s after SIGTERM, exit {exited:.2f} s (grace {grace} s), "
        f"second worker {ready}"
    )
    for pod in pods:
        text = pod.log.read_text(errors="replace")
        assert "Traceback" not in text, pod.tail()
    assert second.process is not None
    second.process.send_signal(signal.SIGTERM)
    assert second.process.wait(timeout=grace) == 0, second.tail()
    # nothing written but the store (and this test's log): the root filesystem may be read-only
    assert files(venv) == installed
    for pod in pods:
        assert {path.name for path in pod.workdir.iterdir()} == {"data", "tmp", "worker.log"}
        assert files(pod.workdir / "tmp") == set()
        assert files(pod.workdir / "data"), "the store is in the data folder"
