"""Handler parameters: the FastAPI-style markers (`Query()`, `Header()`, ...), deciding
where each parameter of a handler comes from, and pulling the converted values out of a
request.

Without a marker: a name in the path template is a path parameter; an UploadFile (or a
list of them) is a multipart file; str/int/float/bool (or a list or union of those) is
a query parameter, looked up in the form fields when absent from the query of a form
request; anything else (dict, list, a dataclass, Any) is the JSON body. With more than
one body parameter, the body is an object holding each under its name.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import typing
from typing import Any, Callable

from ._errors import RequestValidationError
from ._json import JSONTooDeep, loads
from ._request import Request
from ._responses import json_bytes
from ._types import (
    NOT_OBJECT,
    REQUIRED,
    Errors,
    TypeSpec,
    add_error,
    compile_type,
    json_schema,
    parse_json,
    parse_str,
    type_name,
)

_EMPTY = inspect.Parameter.empty
_QUERY_THEN_FORM = ("query", "form")


class ParamMarker:
    """Where a parameter comes from, set with `Query()`, `Header()`, ... as its default."""

    __slots__ = ("source", "default", "alias")

    def __init__(self, source: str, default: Any, alias: str | None) -> None:
        self.source = source
        self.default = default
        self.alias = alias

    def __repr__(self) -> str:
        return f"{self.source.capitalize()}(default={self.default!r}, alias={self.alias!r})"


def Query(default: Any = ..., *, alias: str | None = None) -> Any:
    """A query parameter (`alias`: its name in the query string)."""
    return ParamMarker("query", default, alias)


def Header(default: Any = ..., *, alias: str | None = None) -> Any:
    """A request header; `x_token` reads `x-token` unless `alias` names it. Case-insensitive."""
    return ParamMarker("header", default, alias)


def Form(default: Any = ..., *, alias: str | None = None) -> Any:
    """A form field (urlencoded or multipart), or an uploaded file when annotated UploadFile."""
    return ParamMarker("form", default, alias)


def Body(default: Any = ..., *, alias: str | None = None) -> Any:
    """The JSON body (or, with several body parameters, its member `alias` or the name)."""
    return ParamMarker("body", default, alias)


def Path(default: Any = ..., *, alias: str | None = None) -> Any:
    """A path parameter; always required, so `default` may only be `...`."""
    return ParamMarker("path", default, alias)


@dataclasses.dataclass
class Param:
    """One handler parameter, resolved. `default` is `...` when the parameter is required."""

    name: str
    source: str  # as documented: "path" | "query" | "header" | "form" | "file" | "body" | "request"
    key: str  # its name in the request
    spec: TypeSpec
    default: Any = ...
    lookup: tuple[str, ...] = ()  # where to look for path/query/header/form values, in order

    @property
    def required(self) -> bool:
        return self.default is ...


class HandlerParams:
    """The parameters of one handler: built once per route, then used per request."""

    def __init__(self, func: Callable[..., Any], path_names: frozenset[str]) -> None:
        self._where = getattr(func, "__qualname__", repr(func))
        hints = typing.get_type_hints(func, include_extras=True)
        self.params: list[Param] = []
        for parameter in inspect.signature(func).parameters.values():
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                continue
            if parameter.kind is parameter.POSITIONAL_ONLY:
                raise TypeError(f"{self._where}: positional-only parameter {parameter.name!r}")
            annotation = hints.get(parameter.name, _EMPTY)
            self.params.append(self._resolve(parameter.name, annotation, parameter.default, path_names))
        self.body_params = [param for param in self.params if param.source == "body"]
        if any(param.source == "file" for param in self.params):
            for param in self.params:  # a multipart handler: document unmarked scalars as form fields
                if param.lookup == _QUERY_THEN_FORM:
                    param.source = "form"

    def _resolve(self, name: str, annotation: Any, default: Any, path_names: frozenset[str]) -> Param:
        if isinstance(default, ParamMarker):
            marker: ParamMarker | None = default
            default = default.default
        else:
            marker = _annotated_marker(annotation)
            if default is _EMPTY:
                default = marker.default if marker else ...
        if isinstance(annotation, type) and issubclass(annotation, Request):
            return Param(name, "request", name, TypeSpec("any"))
        spec = TypeSpec("str") if annotation is _EMPTY else compile_type(annotation)
        source = marker.source if marker else _infer_source(name, spec, path_names)
        if spec.is_file and source == "form":
            source = "file"
        if (
            source in ("query", "header", "form")
            and spec.kind == "list"
            and spec.items
            and spec.items.kind == "any"
        ):
            spec = TypeSpec("list", nullable=spec.nullable, items=TypeSpec("str"))  # a bare `list` of strings
        alias = marker.alias if marker else None
        key = alias or (name.replace("_", "-").lower() if source == "header" else name)
        self._check(name, source, key, spec, default, path_names)
        lookup = _QUERY_THEN_FORM if marker is None and source == "query" else (source,)
        return Param(name, source, key, spec, default, lookup)

    def _check(
        self, name: str, source: str, key: str, spec: TypeSpec, default: Any, path_names: frozenset[str]
    ) -> None:
        problem = None
        if source == "path" and (key not in path_names or default is not ...):
            problem = "a path parameter must appear in the path template and have no default"
        elif source == "body" and spec.is_file:
            problem = "an UploadFile cannot come from the JSON body"
        elif source == "path" and not spec.is_scalar:
            problem = "a path parameter must be str, int, float or bool"
        elif source in ("query", "header", "form") and not (spec.is_scalar or spec.is_scalar_list):
            problem = f"a {source} parameter must be str, int, float or bool, or a list of those"
        if problem:
            raise TypeError(f"{self._where}: parameter {name!r}: {problem}")

    def extract(self, request: Request) -> dict[str, Any]:
        """The handler's keyword arguments; raises RequestValidationError listing every problem."""
        errors: Errors = []
        kwargs = {}
        for param in self.params:
            if param.source == "request":
                kwargs[param.name] = request
            elif param.source == "file":
                kwargs[param.name] = _extract_files(param, request, errors)
            elif param.source != "body":
                kwargs[param.name] = _extract_strings(param, request, errors)
        if self.body_params:
            kwargs.update(self._extract_body(request, errors))
        if errors:
            raise RequestValidationError(errors)
        return kwargs

    def _extract_body(self, request: Request, errors: Errors) -> dict[str, Any]:
        raw = request.body()
        value: Any = ...
        if raw.strip():
            try:
                value = loads(raw, request.max_json_depth, parse_constant=_reject_constant)
            except JSONTooDeep as error:
                errors.extend(error.errors)
                return {}
            except (ValueError, RecursionError):
                add_error(errors, ["body"], "invalid JSON")
                return {}
        if len(self.body_params) == 1:
            param = self.body_params[0]
            if value is ...:
                return {param.name: _missing(param, ["body"], errors)}
            return {param.name: parse_json(param.spec, value, ["body"], errors)}
        if value is not ... and not isinstance(value, dict):
            add_error(errors, ["body"], NOT_OBJECT, value)
            return {}
        members = {} if value is ... else value
        return {
            param.name: (
                parse_json(param.spec, members[param.key], ["body", param.key], errors)
                if param.key in members
                else _missing(param, ["body", param.key], errors)
            )
            for param in self.body_params
        }

    def describe(self) -> list[dict[str, Any]]:
        """The parameters as JSON-able dicts (see `App.describe`)."""
        described = []
        for param in self.params:
            if param.source == "request":
                continue
            entry: dict[str, Any] = {"name": param.key, "in": param.source, "type": type_name(param.spec)}
            if param.spec.kind == "list":
                assert param.spec.items is not None
                entry["items"] = type_name(param.spec.items)
            entry["required"] = param.required
            if not param.required:
                entry["default"] = json.loads(json_bytes(param.default))
            described.append(entry)
        return described

    def describe_body(self) -> dict[str, Any] | None:
        """The JSON body's type and schema, or None when the handler takes no body."""
        if not self.body_params:
            return None
        if len(self.body_params) == 1:
            spec = self.body_params[0].spec
            return {"type": type_name(spec), "schema": json_schema(spec)}
        schema = {
            "type": "object",
            "properties": {param.key: json_schema(param.spec) for param in self.body_params},
            "required": [param.key for param in self.body_params if param.required],
        }
        return {"type": "object", "schema": schema}


def _annotated_marker(annotation: Any) -> ParamMarker | None:
    if typing.get_origin(annotation) is typing.Annotated:
        return next((item for item in annotation.__metadata__ if isinstance(item, ParamMarker)), None)
    return None


def _infer_source(name: str, spec: TypeSpec, path_names: frozenset[str]) -> str:
    if name in path_names:
        return "path"
    if spec.is_file:
        return "file"
    if spec.is_scalar or spec.is_scalar_list:
        return "query"
    return "body"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _missing(param: Param, loc: list[Any], errors: Errors) -> Any:
    if param.required:
        add_error(errors, loc, REQUIRED)
    return param.default


def _raw_values(request: Request, source: str, key: str) -> list[str]:
    if source == "path":
        return [request.path_params[key]] if key in request.path_params else []
    if source == "header":
        return [value for name, value in request.headers if name == key.lower()]
    pairs = request.query if source == "query" else request.form
    return [value for name, value in pairs if name == key]


def _extract_strings(param: Param, request: Request, errors: Errors) -> Any:
    for source in param.lookup:
        values = _raw_values(request, source, param.key)
        if values:
            break
    else:
        return _missing(param, [param.source, param.key], errors)
    if param.spec.kind == "list":
        items = param.spec.items
        assert items is not None
        return [
            _convert(items, value, [source, param.key, index], errors) for index, value in enumerate(values)
        ]
    return _convert(param.spec, values[0], [source, param.key], errors)


def _convert(spec: TypeSpec, text: str, loc: list[Any], errors: Errors) -> Any:
    try:
        return parse_str(spec, text)
    except ValueError as exc:
        add_error(errors, loc, str(exc), text)
        return None


def _extract_files(param: Param, request: Request, errors: Errors) -> Any:
    files = [upload for upload in request.files if upload.field == param.key]
    if not files:
        return _missing(param, ["file", param.key], errors)
    return files if param.spec.kind == "list" else files[0]
