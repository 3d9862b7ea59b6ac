"""msgspec Struct types compiled from the event schemas: decode and validate in one C pass.

`decode()` (events.py) first hands a record to one msgspec decoder over the tagged union of
these types. What that decoder accepts is valid by the schema, except for `date-time` formats,
which it leaves as text for `parse_time` to judge: msgspec's own datetime parser accepts more
than RFC 3339 (a space for `T`, `+0800`) and rounds sub-microsecond fractions. Whatever it
refuses goes to the reference validator of `schemas.py`, which names the error and also accepts
the few valid values msgspec is stricter about (an integer written as `5990.0`).

The decoder must never accept what the reference refuses, so it is stricter than the schemas:
- a field the schema does not name is refused (the reference path accepts it): msgspec skips
  an unknown field's value without checking its UTF-8 or its numbers, which orjson does;
- an integer is held to -2**63 .. 2**63-1, which orjson parses exactly (from 2**64 on it reads
  a float, or refuses) and msgspec can bound;
- a field is a string, integer, number, boolean or null, never an object, array or untyped
  value, whose contents msgspec and orjson could again read differently.

Compiled, like the validators, from the schema files: the schemas stay the single source of the
input rules. A schema the compiler cannot express exactly is a ContractError at start-up.
"""

from __future__ import annotations

import keyword
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

import msgspec

from streams.contract.schemas import ANNOTATIONS, VALUE_KEYWORDS, SchemaSet, ecma_pattern
from streams.errors import ContractError

#: Fields every event has; `decode()` reads them as attributes.
COMMON_FIELDS = ("event_id", "order_id", "occurred_at")
#: Integers orjson parses exactly, within the int64 bounds msgspec supports.
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


class EventBody(msgspec.Struct, kw_only=True, tag_field="type"):
    """The schema's fields of one event; read like the JSON object: `body["case_id"]`."""

    if TYPE_CHECKING:  # set on every compiled subclass (COMMON_FIELDS)
        event_id: str
        order_id: str
        occurred_at: str

    def __getitem__(self, name: str) -> Any:
        value = getattr(self, name, msgspec.UNSET)
        if value is msgspec.UNSET:
            raise KeyError(name)
        return value

    def get(self, name: str, default: Any = None) -> Any:
        value = getattr(self, name, msgspec.UNSET)
        return default if value is msgspec.UNSET else value


@dataclass(frozen=True, slots=True)
class EventType:
    """One compiled event type: its Struct and the fields msgspec does not judge alone."""

    name: str
    struct: type[EventBody]
    #: date-time fields besides `occurred_at`, which `decode()` parses anyway.
    other_times: tuple[str, ...]
    #: integer fields: JSON Schema also calls `5990.0` an integer; msgspec does not.
    int_fields: tuple[str, ...]
    #: the fields the Struct has, `type` included; the reference path drops any other.
    fields: frozenset[str]


def compile_event_types(schemas: SchemaSet) -> dict[str, EventType]:
    """Event type -> compiled Struct, for every schema under `events/`."""
    out: dict[str, EventType] = {}
    for doc_id, doc in schemas.documents.items():
        if doc_id.startswith("events/"):
            compiled = _Compiler(schemas, doc_id).event(doc)
            out[compiled.name] = compiled
    return out


def union_decoder(types: Mapping[str, EventType]) -> msgspec.json.Decoder[Any]:
    """One decoder over the tagged union of all event Structs (the tag is `type`)."""
    structs = tuple(t.struct for t in types.values())
    try:
        return msgspec.json.Decoder(Union[structs])  # noqa: UP007 - a runtime tuple of types
    except (TypeError, ValueError) as exc:
        raise ContractError(f"event schemas do not form a msgspec union: {exc}") from exc


class _Compiler:
    def __init__(self, schemas: SchemaSet, doc_id: str) -> None:
        self.schemas, self.doc_id = schemas, doc_id

    def fail(self, where: str, why: str) -> ContractError:
        return ContractError(f"{self.doc_id}{where}: {why}")

    def event(self, doc: Mapping[str, Any]) -> EventType:
        props: Mapping[str, Any] = doc.get("properties", {})
        kind = props.get("type", {}).get("const")
        if doc.get("type") != "object" or not isinstance(kind, str):
            raise self.fail("", "an event schema is an object with properties.type.const")
        required = set(doc.get("required", ()))
        missing = [name for name in ("type", *COMMON_FIELDS) if name not in required]
        if missing:
            raise self.fail("", f"an event must require {missing}")
        fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
        times: list[str] = []
        ints: list[str] = []
        undeclared = sorted(required - set(props))
        if undeclared:
            raise self.fail("", f"required field(s) {undeclared} need a typed property")
        for name, sub in props.items():
            if name == "type":
                continue
            annotation, kinds = self.annotation(sub, self.doc_id, f"/properties/{name}")
            if "date-time" in kinds:
                times.append(name)
            if "integer" in kinds:
                ints.append(name)
            if name in required:
                fields.append((self.field_name(name), annotation))
            else:
                optional = annotation | msgspec.UnsetType
                fields.append((self.field_name(name), optional, msgspec.UNSET))
        struct: type[EventBody] = msgspec.defstruct(  # type: ignore[assignment]
            "Event_" + kind.replace(".", "_"),
            fields,
            bases=(EventBody,),
            tag=kind,
            kw_only=True,
            forbid_unknown_fields=True,
        )
        if "occurred_at" not in times:
            raise self.fail("/properties/occurred_at", "occurred_at must be a date-time")
        times.remove("occurred_at")
        return EventType(kind, struct, tuple(times), tuple(ints), frozenset(props))

    def field_name(self, name: str) -> str:
        if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_"):
            raise self.fail(f"/properties/{name}", "a field name must be a Python identifier")
        return name

    def annotation(
        self, schema: Mapping[str, Any], base: str, where: str
    ) -> tuple[Any, frozenset[str]]:
        """The Struct field type of a property schema, and its JSON types and format."""
        if "$ref" in schema:
            target, target_base = self.schemas.resolve(schema["$ref"], base)
            return self.annotation(target, target_base, where)
        unknown = set(schema) - VALUE_KEYWORDS - ANNOTATIONS
        if unknown:
            raise self.fail(where, f"no msgspec type for keyword(s) {sorted(unknown)}")
        if schema.get("format", "date-time") != "date-time":
            raise self.fail(where, f"unsupported format {schema['format']!r}")
        kinds = schema.get("type")
        if kinds is None:
            raise self.fail(where, "a property needs a type")
        kinds = [kinds] if isinstance(kinds, str) else list(kinds)
        if "format" in schema and kinds != ["string"]:
            raise self.fail(where, "a date-time is a string")
        members = [self.member(kind, schema, where) for kind in kinds]
        annotation = members[0]
        for member in members[1:]:
            annotation = annotation | member
        tags = set(kinds) | ({"date-time"} if "format" in schema else set())
        if "number" in tags:
            tags.discard("integer")  # a number keeps the float it was sent as
        return annotation, frozenset(tags)

    def member(self, kind: str, schema: Mapping[str, Any], where: str) -> Any:
        allowed = schema.get("enum", [schema["const"]] if "const" in schema else None)
        if allowed is not None:
            strings = kind == "string" and all(isinstance(v, str) for v in allowed)
            if not strings or set(schema) & {"minLength", "maxLength", "pattern"}:
                raise self.fail(where, "enum/const: only plain string values are compiled")
            return Literal[tuple(allowed)]  # a string enum: exact members only
        if kind == "string":
            pattern = schema.get("pattern")
            meta = msgspec.Meta(
                min_length=schema.get("minLength"),
                max_length=schema.get("maxLength"),
                pattern=None if pattern is None else ecma_pattern(pattern),
            )
            return Annotated[str, meta]
        if kind in ("integer", "number"):
            low, high = schema.get("minimum"), schema.get("maximum")
            exact = msgspec.Meta(
                ge=_INT_MIN if low is None else max(low, _INT_MIN),
                le=_INT_MAX if high is None else min(high, _INT_MAX),
            )
            if kind == "integer":
                return Annotated[int, exact]
            return Annotated[int, exact] | Annotated[float, msgspec.Meta(ge=low, le=high)]
        if set(schema) & {"minLength", "maxLength", "pattern", "minimum", "maximum"}:
            raise self.fail(where, f"constraints on a {kind} are not compiled")
        simple = {"boolean": bool, "null": type(None)}
        if kind not in simple:
            raise self.fail(where, f"no msgspec type for a {kind} field (events are flat)")
        return simple[kind]
