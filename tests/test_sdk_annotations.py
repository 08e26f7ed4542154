"""The guest SDK with string annotations (`from __future__ import annotations`) and forward references."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional

import pytest

from wasmgate import App, Header, Request, UploadFile
from wasmgate.testing import TestClient

app = App()


@app.get("/items/{item_id}")
def read_item(
    item_id: int, q: str | None = None, tags: list[str] = [], x_trace: Optional[int] = Header(None)
):  # noqa: B006
    return {"item_id": item_id, "q": q, "tags": tags, "trace": x_trace}


@app.post("/orders", status_code=201)
def create_order(order: Order, request: Request) -> dict:
    """Forward reference: `Order` is defined below this handler."""
    return {"total": sum(line.quantity * line.price for line in order.lines), "path": request.path}


@app.post("/upload")
def upload(file: UploadFile | None = None) -> dict:
    return {"name": file.filename if file else None}


@dataclass
class Line:
    sku: str
    quantity: int = 1
    price: float = 0.0


@dataclass
class Order:
    customer: str
    lines: list[Line] = field(default_factory=list)


client = TestClient(app)


def test_string_annotations_are_resolved():
    response = client.get("/items/3?q=x&tags=a&tags=b", headers={"X-Trace": "7"})
    assert response.json() == {"item_id": 3, "q": "x", "tags": ["a", "b"], "trace": 7}
    assert client.get("/items/3").json() == {"item_id": 3, "q": None, "tags": [], "trace": None}
    assert client.get("/items/three").status_code == 422


def test_forward_referenced_dataclass_is_resolved_on_first_use():
    body = {"customer": "c", "lines": [{"sku": "a", "quantity": 2, "price": 1.5}, {"sku": "b", "price": 4}]}
    response = client.post("/orders", json=body)
    assert response.status_code == 201
    assert response.json() == {"total": 7.0, "path": "/orders"}
    errors = client.post("/orders", json={"lines": [{"quantity": "2"}]}).json()["error"]["details"]["errors"]
    assert [error["loc"] for error in errors] == [
        ["body", "customer"],
        ["body", "lines", 0, "sku"],
        ["body", "lines", 0, "quantity"],
    ]


def test_optional_upload_with_string_annotation():
    assert client.post("/upload").json() == {"name": None}
    assert client.post("/upload", files={"file": ("f.txt", b"x")}).json() == {"name": "f.txt"}


def test_describe_after_forward_reference():
    routes = {route["name"]: route for route in app.describe()["routes"]}
    assert routes["create_order"]["summary"] == "Forward reference: `Order` is defined below this handler."
    assert routes["create_order"]["params"] == [
        {"name": "order", "in": "body", "type": "object", "required": True}
    ]
    assert routes["create_order"]["body"]["schema"]["properties"]["lines"]["items"]["title"] == "Line"
    assert routes["read_item"]["params"] == [
        {"name": "item_id", "in": "path", "type": "integer", "required": True},
        {"name": "q", "in": "query", "type": "string", "required": False, "default": None},
        {"name": "tags", "in": "query", "type": "array", "items": "string", "required": False, "default": []},
        {"name": "x-trace", "in": "header", "type": "integer", "required": False, "default": None},
    ]
    assert json.loads(json.dumps(app.describe())) == app.describe()


def test_unresolvable_annotation_fails_loudly_when_used():
    local_app = App()

    @dataclass
    class Local:  # not visible to get_type_hints: only module globals are
        x: int

    @local_app.post("/local")
    def local(body: Local):
        return body.x

    with pytest.raises(NameError):
        TestClient(local_app).post("/local", json={"x": 1})
    with pytest.raises(NameError):
        local_app.describe()
