"""Priming a FastAPI app at build time (`wasmgate._asgi.prime`) runs none of the author's code.

Each route taking a JSON body is sent a body that is not JSON, which FastAPI refuses before a
dependency, a validator, the endpoint or the app's own middleware and handlers could see it;
where any of the author's code could be on that request's way, the route is left alone.
These run natively, under the FastAPI the test extra installs (the release the sandbox's
layer pins); in the sandbox, the differential suite's `openapi_metadata` app (deployed on its
own) is primed, and answers as FastAPI does, the priming's own request included.
(No `from __future__ import annotations` here: FastAPI must see the models the tests define
inside functions, not their names.)
"""

import uuid
from typing import Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from pydantic import BaseModel, field_validator
from starlette.convertors import Convertor, register_url_convertor

from wasmgate._asgi import prime

NIL = "00000000-0000-0000-0000-000000000000"


def counted_app() -> tuple[FastAPI, dict[str, int]]:
    """An app whose every piece of author code counts its runs."""
    calls = {"handler": 0, "dependency": 0, "validator": 0, "factory": 0}

    def tags() -> list[str]:
        calls["factory"] += 1
        return []

    class Item(BaseModel):
        name: str
        tags: list[str] = []

        @field_validator("name", mode="before")
        @classmethod
        def seen(cls, value: Any) -> Any:
            calls["validator"] += 1
            return value

    def dependency() -> int:
        calls["dependency"] += 1
        return 1

    app = FastAPI()

    @app.post("/items/{item_id}")
    def create(item_id: int, item: Item, extra: int = Depends(dependency)) -> dict:
        calls["handler"] += 1
        return {"id": item_id, "name": item.name, "extra": extra}

    @app.put("/things/{key:uuid}", dependencies=[Depends(dependency)])
    async def replace(key: uuid.UUID, item: Item) -> Item:
        calls["handler"] += 1
        return item

    @app.get("/items")
    def listing() -> list:
        calls["handler"] += 1
        return []

    @app.post("/form")
    def form(name: str = Form()) -> str:
        calls["handler"] += 1
        return name

    return app, calls


def test_json_body_routes_are_primed_and_no_author_code_runs():
    app, calls = counted_app()
    assert prime(app) == ["POST /items/0", f"PUT /things/{NIL}"]
    assert calls == {"handler": 0, "dependency": 0, "validator": 0, "factory": 0}


def test_a_primed_app_answers_as_an_unprimed_one():
    primed, _ = counted_app()
    prime(primed)
    plain, _ = counted_app()
    requests = [
        ("POST", "/items/1", {"json": {"name": "a", "tags": ["x"]}}),
        ("POST", "/items/1", {"content": b"{", "headers": {"content-type": "application/json"}}),
        ("POST", "/items/x", {"json": {"name": 1}}),
        ("PUT", f"/things/{uuid.uuid4()}", {"json": {"name": "b"}}),
        ("GET", "/items", {}),
        ("POST", "/form", {"data": {"name": "c"}}),
    ]
    for method, path, options in requests:
        got, want = (TestClient(app).request(method, path, **options) for app in (primed, plain))
        assert (got.status_code, got.json()) == (want.status_code, want.json()), (method, path)


def test_an_app_with_middleware_of_its_own_is_not_primed():
    app, calls = counted_app()
    seen = []

    @app.middleware("http")
    async def count(request: Request, call_next: Any) -> Any:
        seen.append(request.url.path)
        return await call_next(request)

    assert prime(app) == [] and seen == [] and calls["handler"] == 0


def test_cors_and_gzip_middleware_do_not_stop_priming():
    from fastapi.middleware.gzip import GZipMiddleware

    app, calls = counted_app()
    app.add_middleware(CORSMiddleware, allow_origins=["*"])
    app.add_middleware(GZipMiddleware)
    assert prime(app) == ["POST /items/0", f"PUT /things/{NIL}"]
    assert sum(calls.values()) == 0


def test_an_app_answering_validation_errors_itself_is_not_primed():
    app, calls = counted_app()
    handled = []

    @app.exception_handler(RequestValidationError)
    async def mine(request: Request, error: RequestValidationError) -> JSONResponse:
        handled.append(error)
        return JSONResponse({"mine": True}, status_code=400)

    assert prime(app) == [] and handled == [] and sum(calls.values()) == 0


@pytest.mark.parametrize("catch_all_first", [True, False])
def test_a_route_that_could_take_the_request_first_keeps_its_route_unprimed(catch_all_first):
    app = FastAPI()
    calls = []

    class Item(BaseModel):
        name: str

    def catch_all(rest: str) -> dict:
        calls.append(rest)
        return {"rest": rest}

    def create(item_id: int, item: Item) -> dict:
        calls.append(item_id)
        return {}

    routes = [("/{rest:path}", catch_all), ("/items/{item_id}", create)]
    for path, endpoint in routes if catch_all_first else routes[::-1]:
        app.post(path)(endpoint)
    assert prime(app) == ([] if catch_all_first else ["POST /items/0"])
    assert calls == []


def test_routes_after_an_included_router_or_an_authors_convertor_are_left_alone():
    converted = []

    class Counted(Convertor):
        regex = "[0-9]+"

        def convert(self, value: str) -> int:
            converted.append(value)
            return int(value)

        def to_string(self, value: int) -> str:
            return str(value)

    register_url_convertor("counted", Counted())

    class Item(BaseModel):
        name: str

    def endpoint(item: Item) -> dict:
        return {}

    included = FastAPI()
    router = APIRouter(prefix="/r")
    router.post("/in")(endpoint)
    included.post("/before")(endpoint)
    included.include_router(router)
    included.post("/after")(endpoint)
    assert prime(included) == ["POST /before"]

    converting = FastAPI()
    converting.post("/first")(endpoint)
    converting.get("/n/{n:counted}")(lambda n: n)
    converting.post("/n/{m}")(endpoint)
    assert prime(converting) == ["POST /first"] and converted == []
