"""The per-API OpenAPI documents validate, for every parameter kind the SDK supports.

The document is built from `App.describe()`'s route table, which the SDK produces the same
way on the host as in the sandbox, so these tests run the SDK here.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Annotated, Any, Optional, Union

import pytest
from openapi_spec_validator import validate

from gateway.http.openapi import openapi_document
from wasmgate import App, Body, Form, Header, JSONResponse, Path, Query, Request, UploadFile


@dataclasses.dataclass
class Dimensions:
    width: float
    height: float = 1.0


@dataclasses.dataclass
class Item:
    name: str
    price: float = 0.0
    tags: list[str] = dataclasses.field(default_factory=list)
    size: Optional[Dimensions] = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


app = App()


@app.get("/scalars/{item_id}/{ratio}")
def scalars(
    item_id: int,
    ratio: float,
    name: str,
    flag: bool = False,
    count: int = 3,
    maybe: Optional[float] = None,
    either: Union[int, None] = None,
    tags: list[str] = [],  # noqa: B006
    numbers: list[int] = [],  # noqa: B006
    token: Optional[str] = Header(None),
    agent: str = Header("unknown"),
    limit: Annotated[int, Query()] = 10,
):
    return JSONResponse({}, status_code=201)


@app.get("/explicit/{key}")
def explicit(key: str = Path(...), q: Optional[str] = Query(None)):
    return {}


@app.post("/items", status_code=201)
def create_item(item: Item):
    return item


@app.put("/items/{item_id}")
def replace_item(item_id: str, item: Item, note: Optional[str] = None):
    return item


@app.post("/json")
def free_json(body: dict, extra: Optional[list] = Body(None)):
    return body


@app.post("/optional-body")
def optional_body(body: Optional[dict] = Body(None)):
    return {}


@app.post("/upload")
def upload(file: UploadFile, label: str = Form(...), note: Optional[str] = Form(None), copies: int = Form(1)):
    return {}


@app.post("/uploads")
def uploads(files: list[UploadFile], caption: Optional[str] = Form(None)):
    return {}


@app.post("/form")
def form_only(name: str = Form(...), age: Optional[int] = Form(None)):
    return {}


@app.route("/raw/{rest:path}", methods=["GET", "POST", "DELETE"])
def raw(request: Request, rest: str):
    return {}


def document(target: App) -> dict:
    routes = target.describe()["routes"]
    return openapi_document(SimpleNamespace(routes=routes, openapi=None, name="every-kind", version=3, api_id="abc123"))


def test_the_document_of_every_parameter_kind_validates():
    validate(document(app))


def test_optional_parameters_admit_null_and_keep_their_type():
    operation = document(app)["paths"]["/scalars/{item_id}/{ratio}"]["get"]
    schemas = {parameter["name"]: parameter["schema"] for parameter in operation["parameters"]}
    assert schemas["maybe"] == {"type": ["number", "null"], "default": None}
    assert schemas["token"] == {"type": ["string", "null"], "default": None}
    assert schemas["count"] == {"type": "integer", "default": 3}
    assert schemas["item_id"] == {"type": "integer"}


@pytest.mark.parametrize(("path", "method", "status"), [("/scalars/{item_id}/{ratio}", "get", "200"), ("/items", "post", "201")])
def test_other_success_statuses_are_documented_as_success(path, method, status):
    responses = document(app)["paths"][path][method]["responses"]
    assert responses[status] == {"description": "Successful response"}
    assert responses["2XX"] == {"description": "Successful response"}  # e.g. JSONResponse(status_code=201)
    assert "$ref" in str(responses["default"])  # errors keep the error schema


def test_a_document_that_breaks_the_spec_is_caught():
    broken = document(app)
    broken["paths"]["/json"]["post"]["parameters"].append({"name": "x", "in": "query", "schema": {"type": "number", "default": None}})
    with pytest.raises(Exception, match="not of type"):
        validate(broken)
