#!/usr/bin/env bash
# One-time extraction of the CRDs the manifests use, from package registries only (the Go module
# proxy and Maven Central), converted to strict JSON Schemas beside this script. Run it again
# only to move to other operator versions (then update README.md here and re-run the tests):
#
#   PY=.venv/bin/python deploy/k8s/schemas/fetch.sh
#
# Needs go, mvn, unzip, sha256sum and a Python with PyYAML.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
PY=${PY:-python3}
[[ "$PY" == */* ]] && PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"
PO_VERSION=v0.93.0     # github.com/prometheus-operator/prometheus-operator (Go module proxy)
KEDA_VERSION=v2.20.2   # github.com/kedacore/keda/v2 (Go module proxy)
STRIMZI_VERSION=0.51.0 # io.strimzi:api:<version>:jar:tests (Maven Central): crds/v1/
work="$(mktemp -d)"
trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT
export GOMODCACHE="$work/gomod" GOFLAGS=-mod=mod GOTOOLCHAIN=local
mkdir -p "$work/crds"
module_dir() { (cd "$work" && go mod download -json "$1" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'); }

po="$(module_dir "github.com/prometheus-operator/prometheus-operator@$PO_VERSION")"
cp "$po/example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml" \
   "$po/example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml" "$work/crds/"
keda="$(module_dir "github.com/kedacore/keda/v2@$KEDA_VERSION")"
cp "$keda/config/crd/bases/keda.sh_scaledobjects.yaml" \
   "$keda/config/crd/bases/keda.sh_triggerauthentications.yaml" "$work/crds/"
mvn -q -B dependency:copy -Dartifact="io.strimzi:api:$STRIMZI_VERSION:jar:tests" -DoutputDirectory="$work"
unzip -q -j "$work/api-$STRIMZI_VERSION-tests.jar" crds/v1/043-Crd-kafkatopic.yaml -d "$work/crds"
chmod -R u+w "$work"

(cd "$work/crds" && sha256sum ./*.yaml)
convert() { "$PY" "$here/crd2jsonschema.py" -o "$here" "$@"; }
convert --source "github.com/prometheus-operator/prometheus-operator@$PO_VERSION example/prometheus-operator-crd/" \
  --keep PodMonitor/v1 --keep PrometheusRule/v1 \
  "$work/crds/monitoring.coreos.com_podmonitors.yaml" "$work/crds/monitoring.coreos.com_prometheusrules.yaml"
convert --source "github.com/kedacore/keda/v2@$KEDA_VERSION config/crd/bases/" \
  --keep ScaledObject/v1alpha1 --keep TriggerAuthentication/v1alpha1 \
  "$work/crds/keda.sh_scaledobjects.yaml" "$work/crds/keda.sh_triggerauthentications.yaml"
convert --source "io.strimzi:api:$STRIMZI_VERSION:jar:tests crds/v1/" \
  --keep KafkaTopic/v1 "$work/crds/043-Crd-kafkatopic.yaml"
