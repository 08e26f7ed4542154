"""Annotations as data: `compile_type` turns a type annotation into a `TypeSpec` once, at
route registration, so that requests only walk small trees. A spec converts strings
(path, query, header, form values), validates JSON values, and describes itself as JSON
schema.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from typing import Any

from ._uploads import UploadFile

_SCALARS = {str: "str", int: "int", float: "float", bool: "bool"}
_TYPE_NAMES = {
    "any": "object",
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "list": "array",
    "dict": "object",
    "dataclass": "object",
    "file": "file",
}
_UNION_ORIGINS = (typing.Union, types.UnionType)

_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_BOOLEANS = {
    **dict.fromkeys(("true", "1", "yes", "on"), True),
    **dict.fromkeys(("false", "0", "no", "off"), False),
}

NOT_INTEGER = "value is not a valid integer"
NOT_NUMBER = "value is not a valid number"
NOT_BOOLEAN = "value is not a valid boolean"
NOT_STRING = "value is not a valid string"
NOT_LIST = "value is not a valid list"
NOT_OBJECT = "value is not a valid object"
NO_MATCH = "value does not match any allowed type"
REQUIRED = "field required"
EXTRA = "extra field not permitted"

Errors = list[dict[str, Any]]


class TypeSpec:
    """A compiled annotation.

    kind: "any" | "str" | "int" | "float" | "bool" | "list" | "dict" | "dataclass" |
    "union" | "file". `items` is the element spec of a list or the value spec of a
    dict; `options` the members of a union; `cls` and `fields` (name, spec, required)
    describe a dataclass. `nullable` means None is accepted too.
    """

    __slots__ = ("kind", "nullable", "items", "options", "cls", "fields")

    def __init__(
        self,
        kind: str,
        *,
        nullable: bool = False,
        items: TypeSpec | None = None,
        options: tuple[TypeSpec, ...] = (),
        cls: type | None = None,
    ) -> None:
        self.kind = kind
        self.nullable = nullable
        self.items = items
        self.options = options
        self.cls = cls
        self.fields: list[tuple[str, TypeSpec, bool]] = []

    @property
    def is_scalar(self) -> bool:
        """Convertible from one string: str, int, float, bool, or a union of those."""
        if self.kind == "union":
            return all(option.is_scalar for option in self.options)
        return self.kind in ("str", "int", "float", "bool")

    @property
    def is_scalar_list(self) -> bool:
        return self.kind == "list" and self.items is not None and self.items.is_scalar

    @property
    def is_file(self) -> bool:
        """An UploadFile, or a list of them."""
        items = self.items
        return self.kind == "file" or (self.kind == "list" and items is not None and items.kind == "file")

    def nullable_copy(self) -> TypeSpec:
        copy = TypeSpec(self.kind, nullable=True, items=self.items, options=self.options, cls=self.cls)
        copy.fields = self.fields
        return copy


def compile_type(annotation: Any, _seen: dict[type, TypeSpec] | None = None) -> TypeSpec:
    """Compile an annotation; raises TypeError for annotations the SDK cannot handle."""
    seen = {} if _seen is None else _seen
    if annotation is Any or annotation is object:
        return TypeSpec("any")
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return compile_type(args[0], seen)
    if origin in _UNION_ORIGINS:
        members = [arg for arg in args if arg is not type(None)]
        if len(members) == 1:
            spec = compile_type(members[0], seen)
        else:
            spec = TypeSpec("union", options=tuple(compile_type(member, seen) for member in members))
        return spec.nullable_copy() if len(members) < len(args) else spec
    if annotation in _SCALARS:
        return TypeSpec(_SCALARS[annotation])
    if annotation is UploadFile:
        return TypeSpec("file")
    if annotation is list or origin is list:
        return TypeSpec("list", items=compile_type(args[0], seen) if args else TypeSpec("any"))
    if annotation is dict or origin is dict:
        if args and args[0] is not str:
            raise TypeError(f"dict keys must be str: {annotation!r}")
        return TypeSpec("dict", items=compile_type(args[1], seen) if args else TypeSpec("any"))
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return _compile_dataclass(annotation, seen)
    raise TypeError(f"unsupported annotation: {annotation!r}")


def _compile_dataclass(cls: type, seen: dict[type, TypeSpec]) -> TypeSpec:
    if cls in seen:
        return seen[cls]
    spec = seen[cls] = TypeSpec("dataclass", cls=cls)
    hints = typing.get_type_hints(cls, include_extras=True)
    for field in dataclasses.fields(cls):
        if field.init:
            required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
            spec.fields.append((field.name, compile_type(hints[field.name], seen), required))
    return spec


def parse_str(spec: TypeSpec, text: str) -> Any:
    """Convert one string to a scalar spec's type; raises ValueError with the reason."""
    kind = spec.kind
    if kind == "str":
        return text
    if kind == "int":
        if _INTEGER.fullmatch(text):
            return int(text)
        raise ValueError(NOT_INTEGER)
    if kind == "float":
        number = _finite_float(text) if _NUMBER.fullmatch(text) else None
        if number is None:
            raise ValueError(NOT_NUMBER)
        return number
    if kind == "bool":
        try:
            return _BOOLEANS[text.lower()]
        except KeyError:
            raise ValueError(NOT_BOOLEAN) from None
    if kind == "union":
        for option in spec.options:
            try:
                return parse_str(option, text)
            except ValueError:
                pass
        raise ValueError(NO_MATCH)
    raise TypeError(f"cannot convert a string to {kind}")


def _finite_float(value: str | int | float) -> float | None:
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def add_error(errors: Errors, loc: list[Any], msg: str, value: Any = None) -> None:
    errors.append({"loc": loc, "msg": msg, "input": value})


def parse_json(spec: TypeSpec, value: Any, loc: list[Any], errors: Errors) -> Any:
    """Validate a parsed JSON value against `spec`, appending any problems to `errors`.

    Returns the converted value (a dataclass instance for a dataclass spec); when an
    error was added the return value is meaningless.
    """
    kind = spec.kind
    if kind == "any" or (value is None and spec.nullable):
        return value
    if kind == "str":
        if isinstance(value, str):
            return value
        return add_error(errors, loc, NOT_STRING, value)
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        return add_error(errors, loc, NOT_INTEGER, value)
    if kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = _finite_float(value)
            if number is not None:
                return number
        return add_error(errors, loc, NOT_NUMBER, value)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        return add_error(errors, loc, NOT_BOOLEAN, value)
    if kind == "list":
        if not isinstance(value, list):
            return add_error(errors, loc, NOT_LIST, value)
        assert spec.items is not None
        return [parse_json(spec.items, item, [*loc, index], errors) for index, item in enumerate(value)]
    if kind == "dict":
        if not isinstance(value, dict):
            return add_error(errors, loc, NOT_OBJECT, value)
        assert spec.items is not None
        return {key: parse_json(spec.items, item, [*loc, key], errors) for key, item in value.items()}
    if kind == "dataclass":
        return _parse_dataclass(spec, value, loc, errors)
    if kind == "union":
        for option in spec.options:
            attempt: Errors = []
            result = parse_json(option, value, loc, attempt)
            if not attempt:
                return result
        return add_error(errors, loc, NO_MATCH, value)
    raise TypeError(f"{kind} cannot come from JSON")


def _parse_dataclass(spec: TypeSpec, value: Any, loc: list[Any], errors: Errors) -> Any:
    if not isinstance(value, dict):
        return add_error(errors, loc, NOT_OBJECT, value)
    error_count = len(errors)
    kwargs = {}
    for name, field_spec, required in spec.fields:
        if name in value:
            kwargs[name] = parse_json(field_spec, value[name], [*loc, name], errors)
        elif required:
            add_error(errors, [*loc, name], REQUIRED)
    known = {name for name, _, _ in spec.fields}
    for key in value:
        if key not in known:
            add_error(errors, [*loc, key], EXTRA, value[key])
    if len(errors) > error_count:
        return None
    assert spec.cls is not None
    try:
        return spec.cls(**kwargs)
    except ValueError as exc:  # raised by __post_init__ validation
        return add_error(errors, loc, str(exc), value)


def type_name(spec: TypeSpec) -> str:
    """The JSON type name of a spec: "string", "integer", "array", "file", ..."""
    if spec.kind == "union":
        return type_name(spec.options[0])
    return _TYPE_NAMES[spec.kind]


def json_schema(spec: TypeSpec, _open: frozenset[type] = frozenset()) -> dict[str, Any]:
    """A JSON schema (2020-12, as OpenAPI 3.1 uses) for values of `spec`.

    Dataclasses are inlined; a dataclass nested in itself is cut short to a titled object.
    """
    kind = spec.kind
    if kind == "any":
        schema: dict[str, Any] = {}
    elif kind == "file":
        schema = {"type": "string", "format": "binary"}
    elif kind == "list":
        assert spec.items is not None
        schema = {"type": "array", "items": json_schema(spec.items, _open)}
    elif kind == "dict":
        assert spec.items is not None
        schema = {"type": "object"}
        if spec.items.kind != "any":
            schema["additionalProperties"] = json_schema(spec.items, _open)
    elif kind == "dataclass":
        assert spec.cls is not None
        schema = {"type": "object", "title": spec.cls.__name__}
        if spec.cls not in _open:
            inner = _open | {spec.cls}
            schema["properties"] = {name: json_schema(field, inner) for name, field, _ in spec.fields}
            schema["required"] = [name for name, _, required in spec.fields if required]
            schema["additionalProperties"] = False
    elif kind == "union":
        schema = {"anyOf": [json_schema(option, _open) for option in spec.options]}
    else:
        schema = {"type": type_name(spec)}
    if spec.nullable and schema:
        return {"anyOf": [schema, {"type": "null"}]}
    return schema
