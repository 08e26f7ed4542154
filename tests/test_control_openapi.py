"""The control plane's OpenAPI document (`GET /openapi.json`) and the docs pages' shell, in process.

The document is generated from the app's routes: every `/v1/...` route is in it and nothing
else; each declares its answers, bodies, errors and credentials. The pages and their assets
come from the gateway itself (gateway.http.swagger). Whether the answers match the
document: tests/test_gateway_api.py; the pages in a browser: tests/test_docs_browser.py.
"""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute
from openapi_spec_validator import validate
from starlette.testclient import TestClient

from gateway.http import control, jobs
from gateway.http.app import create_app
from gateway.settings import Settings
from gateway.state.specs import ApiSpec
from gateway_support import ADMIN_TOKEN

ERROR = {"$ref": "#/components/schemas/Error"}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return create_app(Settings(data_dir=tmp_path_factory.mktemp("control-openapi"), admin_token=ADMIN_TOKEN))


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as client:
        yield client


@pytest.fixture(scope="module")
def document(client) -> dict:
    response = client.get("/openapi.json")  # no token needed to read it
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    return response.json()


def api_routes(routes: list) -> list[APIRoute]:
    """The app's routes, through the routers it includes (FastAPI keeps them as such)."""
    found = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif hasattr(route, "original_router"):
            found += api_routes(route.original_router.routes)
    return found


def operations(document: dict, routes: list) -> list[tuple[str, str, dict]]:
    found = []
    for route in routes:
        if isinstance(route, APIRoute):
            found += [(route.path, m.lower(), document["paths"][route.path][m.lower()]) for m in route.methods]
    assert found
    return found


def test_the_document_is_valid_and_made_of_the_control_plane_routes(app, document):
    validate(document)
    assert document["openapi"] == "3.1.0"
    routes = {(route.path, method.lower()) for route in api_routes(app.routes) if route.include_in_schema for method in route.methods}
    assert {(path, method) for path, item in document["paths"].items() for method in item} == routes
    assert all(path.startswith("/v1/") for path in document["paths"])  # no /run, /healthz, /docs


def test_every_answer_has_a_schema_and_every_error_the_error_shape(document):
    for path, method, operation in operations(document, control.router.routes + jobs.router.routes):
        for status, response in operation["responses"].items():
            content = response.get("content", {})
            if status.startswith("2") and status != "204":
                assert content and all(media["schema"] for media in content.values()), (path, method, status)
            elif not status.startswith("2"):
                assert content == {"application/json": {"schema": ERROR}}, (path, method, status)
        assert {"401", "403", "default"} <= set(operation["responses"]), (path, method)
    error = document["components"]["schemas"]["ErrorDetail"]
    assert set(error["required"]) == {"code", "message", "details"}
    assert "HTTPValidationError" not in str(document)  # a 422 has the gateway's error shape too


def test_credentials_are_declared(document):
    schemes = document["components"]["securitySchemes"]
    assert schemes["BearerToken"] == {"type": "http", "scheme": "bearer", "description": schemes["BearerToken"]["description"]}
    assert schemes["ApiKey"]["in"] == "header" and schemes["ApiKey"]["name"] == "X-API-Key"
    for _, _, operation in operations(document, control.router.routes):
        assert operation["security"] == [{"BearerToken": []}]
    for path, _, operation in operations(document, jobs.router.routes):
        alternatives = [{"ApiKey": []}, {"BearerToken": []}] if path == "/v1/jobs" else [{"ApiKey": []}]
        assert operation["security"] == alternatives


def test_deploy_bodies_are_documented_as_json_and_multipart(document):
    schemas = document["components"]["schemas"]
    for method, json_model in (("post", "CreateJson"), ("put", "DeployJson")):
        path = "/v1/apis" if method == "post" else "/v1/apis/{ref}"
        body = document["paths"][path][method]["requestBody"]
        assert body["required"] is True
        assert body["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{json_model}"}
        form = body["content"]["multipart/form-data"]
        assert form["schema"] == {"$ref": "#/components/schemas/DeployForm"}
        assert form["encoding"]["limits"] == {"contentType": "application/json"}
        assert set(schemas[json_model]["properties"]) == {"source", *ApiSpec.model_fields}
        streamed = document["paths"][path][method]["responses"]["201" if method == "post" else "200"]["content"]
        assert set(streamed) == {"application/json", "application/x-ndjson"}
    assert set(schemas["CreateJson"]["required"]) == {"source", "name"}
    assert schemas["DeployJson"]["required"] == ["source"]
    assert schemas["DeployForm"]["required"] == ["source"]
    assert schemas["DeployForm"]["properties"]["source"]["format"] == "binary"
    rollback = document["paths"]["/v1/apis/{ref}/rollback"]["post"]["requestBody"]["content"]["application/json"]
    assert rollback["schema"] == {"$ref": "#/components/schemas/RollbackSpec"}
    assert schemas["RollbackSpec"]["required"] == ["version"]


def test_the_control_plane_still_needs_its_token(client):
    assert client.get("/v1/apis").status_code == 401
    assert client.get("/v1/apis", headers={"Authorization": "Bearer " + ADMIN_TOKEN}).json() == {"apis": []}


def test_the_docs_page_loads_nothing_from_elsewhere(client):
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "://" not in page.text  # every asset is the gateway's own
    assert 'data-url="/openapi.json"' in page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
    for asset, media in (("swagger-ui-bundle.js", "javascript"), ("swagger-ui.css", "text/css"), ("docs.js", "javascript")):
        response = client.get(f"/_wasmgate/swagger/{asset}")
        assert response.status_code == 200 and media in response.headers["content-type"], asset
    missing = client.get("/_wasmgate/swagger/index.html")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"


def test_an_unknown_api_has_no_pages(client):
    for path in ("/_wasmgate/apis/nope/docs", "/_wasmgate/apis/nope/openapi.json", "/run/nope/docs"):
        response = client.get(path)
        assert response.status_code == 404 and response.json()["error"]["code"] == "NOT_FOUND"
