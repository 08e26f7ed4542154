"""An API's OpenAPI document (its Swagger UI page: gateway.http.docs).

A FastAPI app's document is its own (`app.openapi()`, made at build time), served as FastAPI
would serve it, with the API's mount as its server and the API key's security scheme. For a
wasmgate SDK app it is made from the route table `App.describe()` reports at build time: per
route the method, path template, summary, success status, parameters (path, query, header,
form, file, body) with their JSON types, and the JSON body's schema.
"""

from __future__ import annotations

from typing import Any

from gateway.state.registry import Deployment

_ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
            "required": ["code", "message", "details"],
        }
    },
    "required": ["error"],
}
_SECURITY_SCHEMES = {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}
_ERROR_RESPONSE = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def openapi_document(deployment: Deployment) -> dict[str, Any]:
    own = deployment.openapi
    if own is not None:
        return _mounted(own, deployment)
    paths: dict[str, dict[str, Any]] = {}
    for route in deployment.routes:
        path = route["path"].replace(":path}", "}")
        paths.setdefault(path, {})[route["method"].lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": deployment.name, "version": str(deployment.version)},
        "servers": [{"url": f"/run/{deployment.api_id}"}],
        "paths": paths,
        "components": {
            "schemas": {"Error": _ERROR_SCHEMA},
            "securitySchemes": _SECURITY_SCHEMES,
        },
        "security": [{"ApiKey": []}],
    }


def _mounted(document: dict[str, Any], deployment: Deployment) -> dict[str, Any]:
    """The app's own document, served under the API's mount, asking for the API key that
    every call needs."""
    components = dict(document.get("components") or {})
    components["securitySchemes"] = {**components.get("securitySchemes", {}), **_SECURITY_SCHEMES}
    return {**document, "servers": [{"url": f"/run/{deployment.api_id}"}], "components": components,
            "security": [*document.get("security", []), {"ApiKey": []}]}


def _operation(route: dict[str, Any]) -> dict[str, Any]:
    params = route.get("params", [])
    operation: dict[str, Any] = {
        "operationId": f"{route['name']}_{route['method'].lower()}",
        "summary": route.get("summary") or route["name"],
        "parameters": [
            _parameter(p) for p in params if p["in"] in ("path", "query", "header")
        ],
        "responses": {
            str(route.get("status_code", 200)): {"description": "Successful response"},
            # A handler may answer another success status itself (JSONResponse(status_code=201)).
            "2XX": {"description": "Successful response"},
            "422": {"description": "Validation error", **_ERROR_RESPONSE},
            "default": {"description": "Error", **_ERROR_RESPONSE},
        },
    }
    body = _request_body(route, params)
    if body:
        operation["requestBody"] = body
    return operation


def _schema(param: dict[str, Any]) -> dict[str, Any]:
    schema = _type_schema(param["type"], param.get("items"))
    if "default" in param:
        schema["default"] = param["default"]
        if param["default"] is None and schema.get("type") != "null":  # Optional[...] = None
            schema["type"] = [schema["type"], "null"]
    return schema


def _type_schema(type_name: str, items: str | None = None) -> dict[str, Any]:
    if type_name == "file":
        return {"type": "string", "format": "binary", "contentMediaType": "application/octet-stream"}
    if type_name == "array":
        return {"type": "array", "items": _type_schema(items or "string")}
    return {"type": type_name}


def _parameter(param: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": param["name"],
        "in": param["in"],
        "required": param["in"] == "path" or bool(param.get("required")),
        "schema": _schema(param),
    }


def _request_body(route: dict[str, Any], params: list[dict[str, Any]]) -> dict[str, Any] | None:
    body = route.get("body")
    if body:
        required = any(p["in"] == "body" and p.get("required") for p in params)
        return {"required": required, "content": {"application/json": {"schema": body.get("schema", {})}}}
    form = [p for p in params if p["in"] in ("form", "file")]
    if not form:
        return None
    media = "multipart/form-data" if any(p["in"] == "file" for p in form) else "application/x-www-form-urlencoded"
    schema = {
        "type": "object",
        "properties": {p["name"]: _schema(p) for p in form},
        "required": [p["name"] for p in form if p.get("required")],
    }
    return {"required": bool(schema["required"]), "content": {media: {"schema": schema}}}

