"""The ASGI adapter's per-request shortcuts give FastAPI's own answers.

`wasmgate._asgi` skips work FastAPI does on every request where the answer cannot differ: it
reads a content type without the email package, and tries FastAPI's documentation routes
after the app's own when no app route could match their paths. These run natively, under
the FastAPI the test extra installs (the release the sandbox's layer pins); the differential
suite (tests/fastapi_compat) checks the same through the sandbox.
"""

from __future__ import annotations

import email.message

from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from hypothesis import example, given
from hypothesis import strategies as st
from starlette.staticfiles import StaticFiles

from wasmgate._asgi import _ContentTypeMessage, _docs_routes_last, prepare

DOCS = ["/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"]


@given(st.text(alphabet=st.sampled_from("aAjJsSoOnN/+;= \t,.x-é\x00\x85"), max_size=30))
@example("application/json; charset=utf-8")
@example("APPLICATION/VND.API+JSON")
@example("application/json/x")
@example("")
def test_a_content_type_reads_as_the_email_package_reads_it(value):
    real, fast = email.message.Message(), _ContentTypeMessage()
    real["content-type"] = value
    fast["content-type"] = value
    assert fast.get_content_maintype() == real.get_content_maintype()
    assert fast.get_content_subtype() == real.get_content_subtype()


def test_anything_else_asked_of_a_message_is_the_email_packages_answer():
    fast = _ContentTypeMessage()
    fast["content-type"] = "text/html; q=0.5; level=1"
    assert fast.get_param("q") == "0.5" and fast.get_param("level") == "1"
    assert (fast.get_content_maintype(), fast.get_content_subtype()) == ("text", "html")
    fast["content-type"] = "application/json"  # a second one: the first is still the one read
    assert fast.get_content_subtype() == "html" and len(fast.get_all("content-type")) == 2


def _paths(app: FastAPI) -> list[str]:
    return [getattr(route, "path", "") for route in app.router.routes]


def _app_with(route_path: str | None) -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    def item(item_id: int) -> dict:
        return {"item_id": item_id}

    if route_path is not None:
        @app.post(route_path)
        def other(page: str = "") -> dict:
            return {"page": page or "other"}

    return app


def test_the_docs_routes_go_last_when_no_route_of_the_app_matches_their_paths():
    app = _app_with(None)
    assert _paths(app)[:4] == DOCS
    prepare(app)
    assert _paths(app) == ["/items/{item_id}", *DOCS]
    client = TestClient(app)
    assert client.get("/docs").status_code == 200 and client.get("/openapi.json").json()["paths"]
    assert client.post("/docs").status_code == 405 and client.get("/items/3").json() == {"item_id": 3}


def test_the_docs_routes_stay_first_when_a_route_matches_one_of_their_paths():
    for path in ("/{page}", "/docs", "/redoc", "/{rest:path}"):  # a POST route: a GET of it matches partly
        app = _app_with(path)
        before = _paths(app)
        _docs_routes_last(app)
        assert _paths(app) == before, path
        assert TestClient(app).get("/docs").status_code == 200, path  # FastAPI's page, as natively


def test_a_mount_or_an_included_route_matching_a_docs_path_keeps_the_order():
    mounted = _app_with(None)
    mounted.mount("/static", StaticFiles(directory=".", check_dir=False))
    included = _app_with(None)
    router = APIRouter(prefix="/docs")

    @router.get("/{page}")
    def page(page: str) -> dict:
        return {"page": page}

    included.include_router(router)
    for app in (mounted, included):
        before = _paths(app)
        _docs_routes_last(app)
        assert _paths(app) == before
    assert TestClient(included).get("/docs/oauth2-redirect").headers["content-type"].startswith("text/html")


def test_an_app_without_its_docs_is_left_as_it_is():
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/")
    def root() -> dict:
        return {}

    _docs_routes_last(app)
    assert _paths(app) == ["/"]
