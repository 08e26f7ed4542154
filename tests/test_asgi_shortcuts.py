"""The ASGI adapter's per-request shortcuts give FastAPI's own answers.

`wasmgate._asgi` skips work FastAPI does on every request where the answer cannot differ: it
reads a content type without the email package, answers that telemetry is off when nothing
configures it without asking OpenTelemetry, tries FastAPI's documentation routes
after the app's own when no app route could match their paths, and does not re-encode a
returned value that is plain JSON already (what a parameter's declaration says, answered
once: tests/test_asgi_parameters.py). These run natively, under
the FastAPI the test extra installs (the release the sandbox's layer pins); the differential
suite (tests/fastapi_compat) checks the same through the sandbox.
"""

from __future__ import annotations

import collections
import email.message
import enum
import json

from fastapi import APIRouter, FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.testclient import TestClient
from hypothesis import example, given
from hypothesis import strategies as st
from starlette.staticfiles import StaticFiles

from wasmgate._asgi import _ContentTypeMessage, _docs_routes_last, install, plain_json_first, prepare

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


class Colour(enum.Enum):
    RED = "red"


_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5),
    st.just(Colour.RED), st.sampled_from(["_sa_state", "_sa", "_s"]),
)
_keys = st.one_of(st.text(max_size=4), st.sampled_from(["_sa_instance_state", "_sa", "_s"]), st.integers(0, 3))
_values = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(_keys, inner, max_size=4),
        st.dictionaries(st.text(max_size=3), inner, max_size=3).map(collections.OrderedDict),
    ),
    max_leaves=20,
)


def _rendered(value):
    return json.dumps(value, allow_nan=True, separators=(",", ":"), ensure_ascii=False)


@given(_values)
@example({"_sa_instance_state": 1, "a": [1, 2.5, None, True]})
@example({1: "x", "y": (1, 2)})
@example([{"a": {"b": [float("nan")]}}])
def test_plain_json_is_encoded_as_fastapi_encodes_it(value):
    fast, slow = plain_json_first(jsonable_encoder)(value), jsonable_encoder(value)
    assert _rendered(fast) == _rendered(slow)
    assert type(fast) is type(slow)


def test_a_value_too_deep_to_look_at_goes_to_fastapis_encoder():
    nested: list = []
    for _ in range(100_000):
        nested = [nested]
    seen = []
    assert plain_json_first(lambda obj: seen.append(obj) or "encoded")(nested) == "encoded" and seen == [nested]


def test_options_go_to_fastapis_encoder():
    value = {"a": None, "b": 1}
    assert plain_json_first(jsonable_encoder)(value, exclude_none=True) == {"b": 1}


def _telemetry_answers(app: FastAPI) -> tuple[object, object]:
    """(the shortcut's answer, FastAPI's own check's) for `app`: a bool, or the exception raised."""
    from fastapi.telemetry._asgi import NativeTelemetry

    install()
    shortcut = NativeTelemetry.enabled
    assert shortcut.__wrapped__ is not shortcut

    def answer(check):  # noqa: ANN001, ANN202
        try:
            return check(app._native_telemetry)
        except Exception as error:  # noqa: BLE001  (a provider that fails to load: both must fail alike)
            return type(error)

    return answer(shortcut), answer(shortcut.__wrapped__)


def test_telemetry_is_answered_off_at_once_only_when_fastapi_would_find_it_off(monkeypatch):
    from opentelemetry import metrics, trace

    for name in ("OTEL_PYTHON_TRACER_PROVIDER", "OTEL_PYTHON_METER_PROVIDER", "OTEL_PYTHON_LOGGER_PROVIDER"):
        monkeypatch.delenv(name, raising=False)
    assert _telemetry_answers(FastAPI()) == (False, False)
    assert _telemetry_answers(FastAPI(telemetry={"tracer_provider": trace.NoOpTracerProvider()})) == (True, True)
    with monkeypatch.context() as patched:  # a provider set globally, in code
        patched.setattr(trace, "_TRACER_PROVIDER", trace.NoOpTracerProvider())
        assert _telemetry_answers(FastAPI()) == (True, True)
        assert _telemetry_answers(FastAPI(telemetry={"tracing": False})) == (False, False)
    with monkeypatch.context() as patched:  # a variable the API sets names a provider
        patched.setenv("OTEL_PYTHON_METER_PROVIDER", "no_such_provider")
        patched.setattr(metrics._internal, "_METER_PROVIDER", None)
        fast, real = _telemetry_answers(FastAPI())
        assert fast == real and fast is not False
