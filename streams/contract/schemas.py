"""Validators compiled from the JSON Schemas under `topics/schemas`.

The schemas are the single source of the input rules. This module compiles the small subset of
JSON Schema (draft 2020-12) that they use into plain Python checks, fast enough for the hot path,
and refuses any keyword outside that subset so that a schema can never say more than is enforced.
A test cross-checks these validators against the reference `jsonschema` implementation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any, Final

import orjson

from streams.contract.folder import topics_dir
from streams.contract.times import is_time
from streams.errors import ContractError, shown

_MISSING: Final = object()

#: A compiled check: returns None when the value is valid, else a readable reason.
Check = Callable[[Any], str | None]

#: Keywords that say nothing about validity.
ANNOTATIONS: Final = frozenset(
    {"$schema", "$id", "$defs", "title", "description", "examples", "default"}
)
#: The keywords that constrain one value (a field of an event).
VALUE_KEYWORDS: Final = frozenset(
    {
        "$ref",
        "type",
        "enum",
        "const",
        "format",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
    }
)
#: Every keyword the compilers understand: a schema using any other is refused.
SUPPORTED: Final = (
    ANNOTATIONS
    | VALUE_KEYWORDS
    | {
        "properties",
        "required",
        "additionalProperties",
        "dependentRequired",
    }
)
_TYPE_EXPR: Final[Mapping[str, str]] = {
    "object": "type({v}) is dict",
    "string": "type({v}) is str",
    "integer": "type({v}) is int or (type({v}) is float and {v}.is_integer())",
    "number": "type({v}) in (int, float)",
    "boolean": "type({v}) is bool",
    "null": "{v} is None",
}
_TYPE_TESTS: Final[Mapping[str, Callable[[Any], bool]]] = {
    "object": lambda v: isinstance(v, dict),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer())
    ),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


class SchemaSet:
    """All schema files of a folder, addressed by their `$id`, with compiled validators."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.documents: dict[str, dict[str, Any]] = {}
        if not root.is_dir():
            raise ContractError(f"schema folder not found: {root}")
        for path in sorted(root.rglob("*.json")):
            try:
                doc = orjson.loads(path.read_bytes())
            except orjson.JSONDecodeError as exc:
                raise ContractError(f"{path}: not valid JSON: {exc}") from exc
            doc_id = doc.get("$id") if isinstance(doc, dict) else None
            if not isinstance(doc_id, str):
                raise ContractError(f"{path}: a schema needs a string $id")
            self.documents[doc_id] = doc

    def validator(self, doc_id: str) -> Check:
        """The compiled check of the document with this `$id`.

        Two forms are compiled from the same schema: one generated Python expression that only
        answers valid/invalid (the hot path), and composed checks that explain a failure.
        """
        if doc_id not in self.documents:
            raise ContractError(f"no schema with $id {doc_id!r} under {self.root}")
        schema = self.documents[doc_id]
        explain = self._compile(schema, doc_id, "")
        names: dict[str, Any] = {"_is_time": is_time, "_MISSING": _MISSING, "_explain": explain}
        # One generated function: a valid value (the hot path) costs one call.
        source = (
            f"def _check(v):\n"
            f"    if {self._expr(schema, doc_id, 'v', names)}:\n"
            f"        return None\n"
            f"    return _explain(v) or 'invalid'\n"
        )
        exec(compile(source, f"<schema {doc_id}>", "exec"), names)
        check: Check = names["_check"]
        return check

    def event_validators(self) -> dict[str, Check]:
        """Input event type -> check, from every schema under `events/`."""
        out: dict[str, Check] = {}
        for doc_id, doc in self.documents.items():
            if not doc_id.startswith("events/"):
                continue
            const = doc.get("properties", {}).get("type", {}).get("const")
            if not isinstance(const, str):
                raise ContractError(f"{doc_id}: an event schema needs properties.type.const")
            out[const] = self.validator(doc_id)
        return out

    def resolve(self, ref: str, base: str) -> tuple[dict[str, Any], str]:
        target, _, pointer = ref.partition("#")
        doc_id = _join(base, target) if target else base
        node: Any = self.documents.get(doc_id)
        if node is None:
            raise ContractError(f"{base}: $ref {ref!r} names an unknown document {doc_id!r}")
        for part in filter(None, pointer.split("/")):
            if not isinstance(node, dict) or part not in node:
                raise ContractError(f"{base}: $ref {ref!r} does not resolve")
            node = node[part]
        if not isinstance(node, dict):
            raise ContractError(f"{base}: $ref {ref!r} is not a schema")
        return node, doc_id

    def _expr(
        self,
        schema: Mapping[str, Any],
        base: str,
        var: str,
        names: dict[str, Any],
        known: str | None = None,
    ) -> str:
        """A Python expression, true exactly when `var` satisfies `schema`.

        `known` is the JSON type `var` is already known to have; once a term has tested the
        type, later terms skip their own type guards.
        """
        if "$ref" in schema:
            target, target_base = self.resolve(schema["$ref"], base)
            return self._expr(target, target_base, var, names, known)
        terms: list[str] = []

        def constant(value: Any) -> str:
            name = f"_c{len(names)}"
            names[name] = value
            return name

        def other_type_passes(kind: str, pytype: str) -> str:
            """A keyword for one type holds for values of any other type, unless type is known."""
            return "" if known == kind else f"type({var}) is not {pytype} or "

        if "type" in schema:
            kinds = [schema["type"]] if isinstance(schema["type"], str) else schema["type"]
            if not (len(kinds) == 1 and kinds[0] == known):
                terms.append("(" + " or ".join(_TYPE_EXPR[k].format(v=var) for k in kinds) + ")")
            if len(kinds) == 1:
                known = kinds[0]
        if "const" in schema:
            const = constant(schema["const"])
            terms.append(f"({var} == {const} and type({var}) is type({const}))")
        if "enum" in schema:
            allowed = constant(frozenset(v for v in schema["enum"] if isinstance(v, str)))
            is_str = "" if known == "string" else f"type({var}) is str and "
            terms.append(f"({is_str}{var} in {allowed})")
        if "format" in schema:
            terms.append(f"({other_type_passes('string', 'str')}_is_time({var}))")
        if "minLength" in schema:
            length = int(schema["minLength"])
            terms.append(f"({other_type_passes('string', 'str')}len({var}) >= {length})")
        if "maxLength" in schema:
            length = int(schema["maxLength"])
            terms.append(f"({other_type_passes('string', 'str')}len({var}) <= {length})")
        if "pattern" in schema:
            regex = constant(re.compile(ecma_pattern(schema["pattern"])))
            terms.append(f"({other_type_passes('string', 'str')}{regex}.search({var}) is not None)")
        for keyword, operator in (("minimum", ">="), ("maximum", "<=")):
            if keyword in schema:
                bound = constant(schema[keyword])
                numeric = known in ("integer", "number")
                guard = "" if numeric else f"type({var}) not in (int, float) or "
                terms.append(f"({guard}{var} {operator} {bound})")
        if "dependentRequired" in schema:
            for name, needs in schema["dependentRequired"].items():
                present = " and ".join(f"{need!r} in {var}" for need in needs) or "True"
                guard = "" if known == "object" else f"type({var}) is not dict or "
                terms.append(f"({guard}{name!r} not in {var} or ({present}))")
        if "required" in schema or "properties" in schema:
            required = list(schema.get("required", ()))
            properties = schema.get("properties", {})
            # A required property is fetched once: present and valid.
            inner = [f"{name!r} in {var}" for name in required if name not in properties]
            for name, sub in properties.items():
                item = f"_v{len(names)}"
                names[item] = None  # reserve the local's name
                test = self._expr(sub, base, item, names)
                fetch = f"({item} := {var}.get({name!r}, _MISSING))"
                if name in required:
                    inner.append(f"({fetch} is not _MISSING and {test})")
                else:
                    inner.append(f"({fetch} is _MISSING or {test})")
            if schema.get("additionalProperties") is False:
                allowed = constant(frozenset(properties))
                inner.append(f"{allowed}.issuperset({var})")
            body = "(" + " and ".join(inner or ["True"]) + ")"
            terms.append(body if known == "object" else f"(type({var}) is not dict or {body})")
        return "(" + " and ".join(terms or ["True"]) + ")"

    def _compile(self, schema: Mapping[str, Any], base: str, where: str) -> Check:
        unknown = set(schema) - SUPPORTED
        if unknown:
            raise ContractError(f"{base}{where}: unsupported keyword(s) {sorted(unknown)}")
        if "$ref" in schema:
            target, target_base = self.resolve(schema["$ref"], base)
            return self._compile(target, target_base, "")
        checks: list[Check] = []
        if "type" in schema:
            checks.append(_type_check(schema["type"]))
        if "const" in schema:
            checks.append(_const_check(schema["const"]))
        if "enum" in schema:
            checks.append(_enum_check(schema["enum"]))
        if "format" in schema:
            if schema["format"] != "date-time":
                raise ContractError(f"{base}{where}: unsupported format {schema['format']!r}")
            checks.append(_time_check)
        if "minLength" in schema:
            checks.append(_min_length_check(int(schema["minLength"])))
        if "maxLength" in schema:
            checks.append(_max_length_check(int(schema["maxLength"])))
        if "pattern" in schema:
            checks.append(_pattern_check(str(schema["pattern"])))
        if "minimum" in schema:
            checks.append(_bound_check(schema["minimum"], upper=False))
        if "maximum" in schema:
            checks.append(_bound_check(schema["maximum"], upper=True))
        if "additionalProperties" in schema and not isinstance(
            schema["additionalProperties"], bool
        ):
            raise ContractError(f"{base}{where}: additionalProperties must be a boolean")
        if "required" in schema or "properties" in schema:
            props = {
                name: self._compile(sub, base, f"{where}/properties/{name}")
                for name, sub in schema.get("properties", {}).items()
            }
            closed = schema.get("additionalProperties") is False
            checks.append(_object_check(tuple(schema.get("required", ())), props, closed))
        if "dependentRequired" in schema:
            checks.append(_dependent_check(schema["dependentRequired"]))
        return _all(checks)


def _join(base: str, target: str) -> str:
    parts = base.split("/")[:-1] + target.split("/")
    out: list[str] = []
    for part in parts:
        if part == "..":
            if out:
                out.pop()
        elif part not in ("", "."):
            out.append(part)
    return "/".join(out)


def _all(checks: list[Check]) -> Check:
    if len(checks) == 1:
        return checks[0]

    def check(value: Any) -> str | None:
        for one in checks:
            error = one(value)
            if error is not None:
                return error
        return None

    return check


def _type_check(spec: str | list[str]) -> Check:
    names = [spec] if isinstance(spec, str) else list(spec)
    tests = [_TYPE_TESTS[name] for name in names]
    wanted = " or ".join(names)

    def check(value: Any) -> str | None:
        for test in tests:
            if test(value):
                return None
        return f"expected {wanted}, got {_kind(value)}"

    return check


def _const_check(const: Any) -> Check:
    return lambda v: None if v == const and type(v) is type(const) else f"must be {const!r}"


def _enum_check(values: list[Any]) -> Check:
    allowed = frozenset(v for v in values if isinstance(v, str))
    allowed_text = ", ".join(map(str, values))
    return lambda v: (
        None if isinstance(v, str) and v in allowed else f"{shown(v)} is not one of {allowed_text}"
    )


def _time_check(value: Any) -> str | None:
    if isinstance(value, str) and not is_time(value):
        return f"{shown(value)} is not an RFC 3339 time with an offset"
    return None


def _min_length_check(length: int) -> Check:
    return lambda v: (
        f"must have at least {length} character(s)"
        if isinstance(v, str) and len(v) < length
        else None
    )


def _max_length_check(length: int) -> Check:
    return lambda v: (
        f"must have at most {length} character(s), has {len(v)}"
        if isinstance(v, str) and len(v) > length
        else None
    )


def _dependent_check(dependencies: Mapping[str, list[str]]) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, dict):
            for name, needs in dependencies.items():
                missing = [need for need in needs if name in value and need not in value]
                if missing:
                    return f"field {name!r} needs {missing[0]!r}"
        return None

    return check


def ecma_pattern(pattern: str) -> str:
    r"""A JSON Schema `pattern` (ECMA-262) as a Python regex that matches the same strings.

    ECMA-262's `$` matches only at the end; Python's also before a final newline (so
    `^[A-Z]{3}$` let `"CNY\n"` through): each `$` outside a character class becomes `\Z`.
    Classes that mean more in Python (`\d`, `\w`, `\s`, `\b`: Unicode, not ASCII) are refused.
    """
    out, escaped, in_class = [], False, False
    for char in pattern:
        if escaped:
            if char in "dDwWsSbB":
                raise ContractError(
                    f"pattern {pattern!r}: \\{char} means other characters in Python than in "
                    "ECMA-262; spell the class out"
                )
            out.append(char)
            escaped = False
        elif char == "\\":
            out.append(char)
            escaped = True
        elif char == "[" and not in_class:
            out.append(char)
            in_class = True
        elif char == "]" and in_class:
            out.append(char)
            in_class = False
        elif char == "$" and not in_class:
            out.append("\\Z")
        else:
            out.append(char)
    return "".join(out)


def _pattern_check(pattern: str) -> Check:
    regex = re.compile(ecma_pattern(pattern))

    def check(v: Any) -> str | None:
        if isinstance(v, str) and not regex.search(v):
            return f"{shown(v)} does not match {pattern}"
        return None

    return check


def _bound_check(bound: float, upper: bool) -> Check:
    """`minimum` (upper=False) or `maximum` (upper=True); other types pass."""
    error = f"must be at {'most' if upper else 'least'} {bound}"

    def check(value: Any) -> str | None:
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        outside = numeric and (value > bound if upper else value < bound)
        return error if outside else None

    return check


def _object_check(required: tuple[str, ...], props: dict[str, Check], closed: bool) -> Check:
    items = tuple(props.items())
    allowed = frozenset(props)

    def check(value: Any) -> str | None:
        if not isinstance(value, dict):
            return None
        for name in required:
            if name not in value:
                return f"missing required field {name!r}"
        for name, sub in items:
            if name in value:
                error = sub(value[name])
                if error is not None:
                    return f"field {name!r}: {error}"
        if closed:
            extra = sorted(set(value) - allowed)
            if extra:
                return f"unexpected field(s) {extra}"
        return None

    return check


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return {str: "string", int: "integer", float: "number"}.get(type(value), type(value).__name__)


@cache
def contract() -> SchemaSet:
    """The shipped contract's schemas, loaded once."""
    return SchemaSet(topics_dir() / "schemas")
