"""Responses checked against deploy/openapi.yaml: the schema of (path, status) in the
document, validated with jsonschema (OpenAPI 3.1 schemas are JSON Schema 2020-12)."""

from __future__ import annotations

from functools import cache
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.repo import ROOT

OPENAPI = ROOT / "deploy" / "openapi.yaml"
URI = "urn:aftersale:openapi"


@cache
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))
    return loaded


@cache
def _registry() -> Registry[Any]:
    resource = Resource.from_contents(document(), default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(URI, resource)
    return registry


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def schema_pointer(path: str, status: int) -> str:
    """Where the JSON body schema of `status` for GET `path` (a template) is in the document."""
    doc = document()
    response = doc["paths"][path]["get"]["responses"][str(status)]
    pointer = f"/paths/{_escape(path)}/get/responses/{status}"
    if "$ref" in response:
        pointer = response["$ref"].removeprefix("#")
        name = pointer.rsplit("/", 1)[1]
        response = doc["components"]["responses"][name]
    assert "application/json" in response["content"], f"{path} {status}: no JSON body"
    return pointer + "/content/application~1json/schema"


def check_response(path: str, status: int, body: Any) -> None:
    """Fail unless `body` is valid for GET `path` answering `status` (declared)."""
    validator = Draft202012Validator(
        {"$ref": f"{URI}#{schema_pointer(path, status)}"},
        registry=_registry(),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )
    validator.validate(body)
