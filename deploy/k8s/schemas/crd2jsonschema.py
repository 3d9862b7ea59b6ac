#!/usr/bin/env python3
"""Turn CustomResourceDefinition YAML files into strict JSON Schemas (one per served version).

    python crd2jsonschema.py -o deploy/k8s/schemas [--keep KIND/VERSION ...] CRD.yaml ...

writes OUT/<group>/<kind>_<version>.json. Each is the version's `openAPIV3Schema` with
`apiVersion` and `kind` pinned (an enum each), `metadata` an object (the tests check it against
Kubernetes' ObjectMeta), and `additionalProperties: false` on every object that lists
`properties` and neither sets `additionalProperties` nor `x-kubernetes-preserve-unknown-fields`
(what the API server prunes silently is an error here; kubeconform's strict mode does the same).
OpenAPI v3 schemas are read as JSON Schema draft 4. CEL rules (`x-kubernetes-validations`) are
kept but not checked by jsonschema.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

import yaml


def strictify(node: Any) -> None:
    """Forbid unknown fields wherever the CRD lists the known ones and allows no others."""
    if isinstance(node, dict):
        if (
            node.get("type") == "object"
            and "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for value in node.values():
            strictify(value)
    elif isinstance(node, list):
        for value in node:
            strictify(value)


def schema_for(crd: dict[str, Any], version: dict[str, Any], source: str) -> dict[str, Any]:
    schema: dict[str, Any] = copy.deepcopy(version["schema"]["openAPIV3Schema"])
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    properties = schema.setdefault("properties", {})
    properties["apiVersion"] = {"type": "string", "enum": [f"{group}/{version['name']}"]}
    properties["kind"] = {"type": "string", "enum": [kind]}
    properties["metadata"] = {"type": "object"}
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    strictify(schema)
    schema["$schema"] = "http://json-schema.org/draft-04/schema#"
    schema["x-crd-source"] = source
    return schema


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--keep", action="append", default=[], metavar="KIND/VERSION", help="only these"
    )
    parser.add_argument("--source", default="", help="where the CRDs came from (recorded)")
    parser.add_argument("crds", nargs="+", type=Path)
    args = parser.parse_args()
    keep = {item.lower() for item in args.keep}
    for path in args.crds:
        for crd in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                wanted = f"{kind}/{version['name']}".lower()
                if not version.get("served", True) or (keep and wanted not in keep):
                    continue
                source = f"{args.source} {path.name}".strip()
                target = args.out / group / f"{kind.lower()}_{version['name']}.json"
                target.parent.mkdir(parents=True, exist_ok=True)
                text = json.dumps(schema_for(crd, version, source), indent=1, sort_keys=True)
                target.write_text(text + "\n", encoding="utf-8")
                print(f"{target} {target.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
