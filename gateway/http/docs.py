"""The gateway's documentation: the control plane's OpenAPI document and its Swagger UI page,
and each API's own, under a prefix no guest route can take.

- `GET /openapi.json`, `GET /docs`: the control plane (`/v1/...`), generated from its routes
  (gateway.http.schemas). Reading them needs no token; the page's Authorize button takes
  the admin token for "Try it out".
- `GET /_wasmgate/apis/{id}/openapi.json`, `GET /_wasmgate/apis/{id}/docs`: an API's
  document (gateway.http.openapi) and page. `/run/{id}/openapi.json` and `/run/{id}/docs`
  serve the same unless a route of the API answers that path: then the API's route wins
  (gateway.http.dataplane) and these stay the way to the gateway's.
- A private API's document needs one of its keys (`X-API-Key`); its page does not: it asks
  for the key and fetches the document with it (gateway.http.swagger).
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema
from starlette.responses import Response

from gateway.errors import json_response, not_found
from gateway.http import swagger
from gateway.http.openapi import openapi_document
from gateway.http.schemas import referenced_models
from gateway.services import services
from gateway.state.registry import Deployment

RESERVED = "/_wasmgate/apis"
CONTROL_DESCRIPTION = (
    "Deploy, update, roll back and delete APIs, manage their keys, read their logs and usage "
    "(`Authorization: Bearer <token>`: the admin's, or an account's for its own APIs), and follow "
    "async jobs (`X-API-Key`). Each API is called under `/run/{id}/...`, documented at `/run/{id}/docs`."
)

router = APIRouter()


@router.get("/openapi.json", include_in_schema=False)
def control_openapi(request: Request) -> Response:
    return json_response(control_document(request.app))


@router.get("/docs", include_in_schema=False)
def control_docs(request: Request) -> Response:
    return swagger.page(f"{request.app.title} control plane", "/openapi.json")


@router.get(RESERVED + "/{api_id}/openapi.json", include_in_schema=False)
def reserved_openapi(request: Request, api_id: str) -> Response:
    return api_document(request, _deployment(request, api_id))


@router.get(RESERVED + "/{api_id}/docs", include_in_schema=False)
def reserved_docs(request: Request, api_id: str) -> Response:
    return api_page(_deployment(request, api_id))


def control_document(app: FastAPI) -> dict[str, Any]:
    """The control plane's OpenAPI document, made once per app."""
    if app.openapi_schema is None:
        document = get_openapi(
            title=f"{app.title} control plane", version=version("wasmgate"), openapi_version="3.1.0",
            description=CONTROL_DESCRIPTION, routes=app.routes,
        )
        _, extra = models_json_schema(
            [(model, "validation") for model in referenced_models()], ref_template="#/components/schemas/{model}"
        )
        document["components"]["schemas"].update(extra["$defs"])
        _error_shapes(document)
        app.openapi_schema = document
    return app.openapi_schema


def _error_shapes(document: dict[str, Any]) -> None:
    """Every error has the gateway's shape (gateway.errors), FastAPI's 422 of a parameter too."""
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    for operation in (op for item in document["paths"].values() for op in item.values()):
        responses = operation["responses"]
        if "HTTPValidationError" in str(responses.get("422", "")):
            responses["422"] = {"description": "The request is invalid (VALIDATION_ERROR)", **error}
        responses.setdefault("default", {"description": "An error", **error})
    for name in ("HTTPValidationError", "ValidationError"):
        document["components"]["schemas"].pop(name, None)


def claimed(deployment: Deployment, path: str) -> bool:
    """True when a GET route of the API answers `path` (its own /docs, say): it wins."""
    return deployment.route_for("GET", path) is not None


def api_document(request: Request, deployment: Deployment) -> Response:
    if deployment.private:
        services(request).deployments.keys.verify(deployment.api_id, request.headers)
    return json_response(openapi_document(deployment))


def api_page(deployment: Deployment) -> Response:
    """The API's Swagger UI page: public, even for a private API (it asks for the key)."""
    own = f"/run/{deployment.api_id}/openapi.json"
    url = f"{RESERVED}/{deployment.api_id}/openapi.json" if claimed(deployment, "/openapi.json") else own
    return swagger.page(deployment.name, url, ask_key=deployment.private)


def _deployment(request: Request, api_id: str) -> Deployment:
    deployment = services(request).deployments.registry.get(api_id)
    if deployment is None:
        raise not_found(f"no API {api_id}")
    return deployment
