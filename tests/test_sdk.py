"""The guest SDK (`wasmgate`) run natively: routing, parameters, responses, errors, describe()."""

import asyncio
import json
from dataclasses import dataclass, field
from typing import Annotated, Any, List, Optional, Union

import pytest

from wasmgate import (
    App,
    Body,
    Form,
    Header,
    HTTPException,
    JSONResponse,
    Path,
    Query,
    Request,
    Response,
    UploadFile,
)
from wasmgate.testing import TestClient

# --- the example API from the SDK contract --------------------------------------------------------

app = App()


@app.get("/hello/{name}")
def hello(name: str, times: int = 1):
    """Greet someone.

    Longer description that is not part of the summary.
    """
    return {"message": " ".join(["hello " + name] * times)}


@app.post("/sum")
def total(body: dict):
    return {"sum": sum(body["values"])}


@app.post("/upload")
def upload(file: UploadFile, label: str):
    data = file.read()
    return {"filename": file.filename, "size": len(data), "label": label, "content_type": file.content_type}


@app.get("/png")
def png():
    return Response(b"\x89PNG...", media_type="image/png")


@app.get("/missing")
def missing():
    raise HTTPException(404, "no such thing")


client = TestClient(app)


def error(code: str, message: str, details: Any = None) -> dict:
    return {"error": {"code": code, "message": message, "details": {} if details is None else details}}


def validation_errors(response) -> list:
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == "VALIDATION_ERROR"
    assert set(body["error"]["details"]) == {"errors"}
    return body["error"]["details"]["errors"]


def make_client(*handlers_by_route) -> TestClient:
    """A client for a fresh app with `(method, path, handler)` routes."""
    fresh = App()
    for method, path, handler in handlers_by_route:
        fresh.route(path, [method])(handler)
    return TestClient(fresh)


# --- the example API ------------------------------------------------------------------------------


def test_path_and_query_parameters():
    assert client.get("/hello/world").json() == {"message": "hello world"}
    response = client.get("/hello/world?times=2")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"message": "hello world hello world"}
    assert client.get("/hello/world", params={"times": 3}).json()["message"].count("hello") == 3


def test_path_is_percent_decoded_by_the_client():
    assert client.get("/hello/a%20b").json() == {"message": "hello a b"}


def test_invalid_query_parameter_is_a_422_with_the_exact_shape():
    response = client.get("/hello/world?times=abc")
    assert response.status_code == 422
    assert response.json() == error(
        "VALIDATION_ERROR",
        "invalid request: query.times: value is not a valid integer",
        {"errors": [{"loc": ["query", "times"], "msg": "value is not a valid integer", "input": "abc"}]},
    )


def test_json_body():
    assert client.post("/sum", json={"values": [1, 2, 3.5]}).json() == {"sum": 6.5}


def test_invalid_json_body():
    response = client.post("/sum", content=b"{not json", headers={"content-type": "application/json"})
    assert validation_errors(response) == [{"loc": ["body"], "msg": "invalid JSON", "input": None}]


@pytest.mark.parametrize("content", [b"NaN", b"[Infinity]", b"\xff\xfe\x00"])
def test_non_standard_or_undecodable_json_is_invalid(content):
    assert validation_errors(client.post("/sum", content=content)) == [
        {"loc": ["body"], "msg": "invalid JSON", "input": None}
    ]


DEEP = "[" * 1000 + "]" * 1000


def test_json_nested_past_the_limit_is_refused_before_parsing():
    too_deep = [{"loc": ["body"], "msg": "JSON nested deeper than 128 levels", "input": None}]
    assert validation_errors(client.post("/sum", content=DEEP)) == too_deep
    assert validation_errors(client.post("/sum", content="{" * 600)) == too_deep  # unclosed too
    at_limit = "[" * 127 + "{}" + "]" * 127
    assert validation_errors(client.post("/sum", content=at_limit)) != too_deep  # parsed: a list, not a dict
    # Brackets inside strings are text, not nesting.
    texty = json.dumps({"values": [1], "note": "[" * 5000 + '\\"{' * 100})
    assert client.post("/sum", content=texty).json() == {"sum": 1}


def test_the_json_depth_limit_is_the_apps_and_applies_to_request_json():
    strict, lenient = App(max_json_depth=3), App(max_json_depth=2000)
    for app_ in (strict, lenient):
        @app_.post("/raw")
        def raw(request: Request):
            return {"chars": len(json.dumps(request.json()))}

    assert TestClient(strict).post("/raw", content="[[[]]]").json() == {"chars": 6}
    refused = TestClient(strict).post("/raw", content="[[[[]]]]")
    assert refused.status_code == 422 and "deeper than 3 levels" in refused.json()["error"]["message"]
    assert TestClient(lenient).post("/raw", content="[" * 900 + "]" * 900).json() == {"chars": 1800}
    with pytest.raises(ValueError):
        App(max_json_depth=0)


def test_missing_json_body():
    assert validation_errors(client.post("/sum")) == [
        {"loc": ["body"], "msg": "field required", "input": None}
    ]
    assert validation_errors(client.post("/sum", content=b"  \n")) == [
        {"loc": ["body"], "msg": "field required", "input": None}
    ]


def test_json_body_of_the_wrong_type():
    assert validation_errors(client.post("/sum", json=[1, 2])) == [
        {"loc": ["body"], "msg": "value is not a valid object", "input": [1, 2]}
    ]


def test_multipart_upload_with_a_form_field():
    response = client.post(
        "/upload", files={"file": ("notes.txt", b"some bytes", "text/plain")}, data={"label": "mine"}
    )
    assert response.status_code == 200
    assert response.json() == {
        "filename": "notes.txt",
        "size": 10,
        "label": "mine",
        "content_type": "text/plain",
    }


def test_upload_missing_file_and_field_reports_both():
    response = client.post("/upload", data={"other": "x"})
    assert validation_errors(response) == [
        {"loc": ["file", "file"], "msg": "field required", "input": None},
        {"loc": ["form", "label"], "msg": "field required", "input": None},
    ]
    assert response.json()["error"]["message"] == (
        "invalid request: file.file: field required; form.label: field required"
    )


def test_binary_response():
    response = client.get("/png")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == b"\x89PNG..."


def test_http_exception_from_handler():
    response = client.get("/missing")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == error("NOT_FOUND", "no such thing")


def test_unmatched_path_is_404():
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == error("NOT_FOUND", "no route matches /nowhere")


def test_trailing_slash_does_not_match():
    assert client.get("/png/").status_code == 404
    assert client.get("/hello/").status_code == 404


def test_wrong_method_is_405_with_allow_header():
    response = client.post("/png")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert response.json() == error("METHOD_NOT_ALLOWED", "method POST is not allowed for /png")
    response = client.delete("/sum")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


def test_head_runs_the_get_handler_without_a_body():
    response = TestClient(app).request("HEAD", "/png")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == b""


def test_describe_example_app():
    described = app.describe()
    assert json.loads(json.dumps(described)) == described
    assert described == {
        "routes": [
            {
                "method": "GET",
                "path": "/hello/{name}",
                "name": "hello",
                "summary": "Greet someone.",
                "status_code": 200,
                "params": [
                    {"name": "name", "in": "path", "type": "string", "required": True},
                    {"name": "times", "in": "query", "type": "integer", "required": False, "default": 1},
                ],
                "body": None,
            },
            {
                "method": "POST",
                "path": "/sum",
                "name": "total",
                "summary": "",
                "status_code": 200,
                "params": [{"name": "body", "in": "body", "type": "object", "required": True}],
                "body": {"type": "object", "schema": {"type": "object"}},
            },
            {
                "method": "POST",
                "path": "/upload",
                "name": "upload",
                "summary": "",
                "status_code": 200,
                "params": [
                    {"name": "file", "in": "file", "type": "file", "required": True},
                    {"name": "label", "in": "form", "type": "string", "required": True},
                ],
                "body": None,
            },
            {
                "method": "GET",
                "path": "/png",
                "name": "png",
                "summary": "",
                "status_code": 200,
                "params": [],
                "body": None,
            },
            {
                "method": "GET",
                "path": "/missing",
                "name": "missing",
                "summary": "",
                "status_code": 200,
                "params": [],
                "body": None,
            },
        ]
    }


# --- coercion of path / query / header / form values ----------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "raw", "expected"),
    [
        (str, "text", "text"),
        (str, "", ""),
        (int, "42", 42),
        (int, "-7", -7),
        (int, "+7", 7),
        (int, "007", 7),
        (float, "1.5", 1.5),
        (float, "-2", -2.0),
        (float, "1e3", 1000.0),
        (float, ".5", 0.5),
        (bool, "true", True),
        (bool, "false", False),
        (Optional[int], "3", 3),
        (Union[int, None], "3", 3),
        (int | None, "3", 3),
        (Union[int, str], "3", 3),
        (Union[int, str], "x", "x"),
    ],
)
def test_scalar_coercion(annotation, raw, expected):
    def handler(value: annotation):
        return {"value": value, "type": type(value).__name__}

    response = make_client(("GET", "/", handler)).get("/", params={"value": raw})
    assert response.status_code == 200
    assert response.json() == {"value": expected, "type": type(expected).__name__}


@pytest.mark.parametrize(
    ("annotation", "raw", "message"),
    [
        (int, "abc", "value is not a valid integer"),
        (int, "1.5", "value is not a valid integer"),
        (int, "", "value is not a valid integer"),
        (int, " 1", "value is not a valid integer"),
        (int, "1_000", "value is not a valid integer"),
        (int, "٣", "value is not a valid integer"),
        (float, "abc", "value is not a valid number"),
        (float, "nan", "value is not a valid number"),
        (float, "inf", "value is not a valid number"),
        (float, "1e999", "value is not a valid number"),
        (float, "1_0", "value is not a valid number"),
        (bool, "maybe", "value is not a valid boolean"),
        (bool, "", "value is not a valid boolean"),
        (Optional[int], "", "value is not a valid integer"),
        (Union[int, float], "x", "value does not match any allowed type"),
    ],
)
def test_scalar_coercion_errors(annotation, raw, message):
    def handler(value: annotation):
        return value

    response = make_client(("GET", "/", handler)).get("/", params={"value": raw})
    assert validation_errors(response) == [{"loc": ["query", "value"], "msg": message, "input": raw}]
    assert response.json()["error"]["message"] == f"invalid request: query.value: {message}"


@pytest.mark.parametrize("word", ["true", "TRUE", "True", "1", "yes", "Yes", "on", "ON"])
def test_true_words(word):
    def handler(flag: bool):
        return flag

    assert make_client(("GET", "/", handler)).get("/", params={"flag": word}).json() is True


@pytest.mark.parametrize("word", ["false", "FALSE", "0", "no", "NO", "off", "Off"])
def test_false_words(word):
    def handler(flag: bool):
        return flag

    assert make_client(("GET", "/", handler)).get("/", params={"flag": word}).json() is False


def test_unannotated_parameters_are_strings():
    def handler(a, b=5):
        return [a, b]

    test_client = make_client(("GET", "/", handler))
    assert test_client.get("/?a=1").json() == ["1", 5]
    assert test_client.get("/?a=1&b=2").json() == ["1", "2"]


def test_path_parameters_are_coerced():
    def handler(item_id: int, ratio: float, flag: bool):
        return [item_id, ratio, flag]

    test_client = make_client(("GET", "/items/{item_id}/{ratio}/{flag}", handler))
    assert test_client.get("/items/7/0.5/yes").json() == [7, 0.5, True]
    assert validation_errors(test_client.get("/items/x/y/z")) == [
        {"loc": ["path", "item_id"], "msg": "value is not a valid integer", "input": "x"},
        {"loc": ["path", "ratio"], "msg": "value is not a valid number", "input": "y"},
        {"loc": ["path", "flag"], "msg": "value is not a valid boolean", "input": "z"},
    ]


def test_path_converter_matches_slashes():
    def handler(owner: str, rest: str):
        return [owner, rest]

    test_client = make_client(("GET", "/files/{owner}/{rest:path}", handler))
    assert test_client.get("/files/me/a/b/c.txt").json() == ["me", "a/b/c.txt"]
    assert test_client.get("/files/me/").status_code == 404


def test_segments_do_not_match_slashes_and_literals_are_escaped():
    def handler(name: str):
        return name

    test_client = make_client(("GET", "/v1.0/{name}", handler))
    assert test_client.get("/v1.0/x").json() == "x"
    assert test_client.get("/v1x0/x").status_code == 404
    assert test_client.get("/v1.0/x/y").status_code == 404


def test_first_matching_route_wins():
    fresh = App()

    @fresh.get("/users/me")
    def me():
        return "me"

    @fresh.get("/users/{name}")
    def user(name: str):
        return name

    test_client = TestClient(fresh)
    assert test_client.get("/users/me").json() == "me"
    assert test_client.get("/users/bob").json() == "bob"


def test_required_and_optional_query_parameters():
    def handler(
        required: int, optional: Optional[int] = None, with_default: int = 10, nullable: int | None = None
    ):
        return [required, optional, with_default, nullable]

    test_client = make_client(("GET", "/", handler))
    assert test_client.get("/?required=1").json() == [1, None, 10, None]
    assert test_client.get("/?required=1&optional=2&with_default=3&nullable=4").json() == [1, 2, 3, 4]
    assert validation_errors(test_client.get("/")) == [
        {"loc": ["query", "required"], "msg": "field required", "input": None}
    ]


def test_optional_without_default_is_required():
    def handler(value: Optional[str]):
        return value

    test_client = make_client(("GET", "/", handler))
    assert validation_errors(test_client.get("/")) == [
        {"loc": ["query", "value"], "msg": "field required", "input": None}
    ]
    assert test_client.get("/?value=").json() == ""


def test_first_of_repeated_scalar_query_values_wins():
    def handler(value: int):
        return value

    assert make_client(("GET", "/", handler)).get("/?value=1&value=2").json() == 1


def test_list_query_parameters():
    def handler(tag: list[str] = [], ids: List[int] = [], flags: Optional[list[bool]] = None):  # noqa: B006
        return {"tag": tag, "ids": ids, "flags": flags}

    test_client = make_client(("GET", "/", handler))
    assert test_client.get("/?tag=a&tag=b&ids=1&ids=2").json() == {
        "tag": ["a", "b"],
        "ids": [1, 2],
        "flags": None,
    }
    assert test_client.get("/", params={"tag": ["x", "y"], "flags": ["on", "off"]}).json() == {
        "tag": ["x", "y"],
        "ids": [],
        "flags": [True, False],
    }
    assert test_client.get("/", params=[("ids", "3"), ("ids", "4")]).json()["ids"] == [3, 4]
    assert validation_errors(test_client.get("/?ids=1&ids=x&ids=2&ids=y")) == [
        {"loc": ["query", "ids", 1], "msg": "value is not a valid integer", "input": "x"},
        {"loc": ["query", "ids", 3], "msg": "value is not a valid integer", "input": "y"},
    ]


def test_list_query_parameter_without_default_is_required():
    def handler(tag: list[str]):
        return tag

    test_client = make_client(("GET", "/", handler))
    assert validation_errors(test_client.get("/")) == [
        {"loc": ["query", "tag"], "msg": "field required", "input": None}
    ]
    assert test_client.get("/?tag=").json() == [""]


def test_all_errors_are_collected():
    def handler(item_id: int, count: int, name: str, flag: bool = False, x_token: str = Header()):
        return "unreachable"

    response = make_client(("GET", "/items/{item_id}", handler)).get("/items/one?count=two&flag=maybe")
    assert validation_errors(response) == [
        {"loc": ["path", "item_id"], "msg": "value is not a valid integer", "input": "one"},
        {"loc": ["query", "count"], "msg": "value is not a valid integer", "input": "two"},
        {"loc": ["query", "name"], "msg": "field required", "input": None},
        {"loc": ["query", "flag"], "msg": "value is not a valid boolean", "input": "maybe"},
        {"loc": ["header", "x-token"], "msg": "field required", "input": None},
    ]
    assert response.json()["error"]["message"] == (
        "invalid request: path.item_id: value is not a valid integer; query.count: value is not a valid integer; "
        "query.name: field required; query.flag: value is not a valid boolean; header.x-token: field required"
    )


# --- explicit markers -----------------------------------------------------------------------------


def test_header_marker():
    def handler(
        x_token: str = Header(),
        custom: Optional[str] = Header(default=None, alias="X-Custom-Name"),
        x_count: int = Header(0),
    ):
        return [x_token, custom, x_count]

    test_client = make_client(("GET", "/", handler))
    assert test_client.get("/", headers={"X-Token": "secret"}).json() == ["secret", None, 0]
    assert test_client.get("/", headers={"x-token": "s", "x-custom-name": "c", "X-COUNT": "5"}).json() == [
        "s",
        "c",
        5,
    ]
    assert validation_errors(test_client.get("/", headers={"x-count": "many"})) == [
        {"loc": ["header", "x-token"], "msg": "field required", "input": None},
        {"loc": ["header", "x-count"], "msg": "value is not a valid integer", "input": "many"},
    ]


def test_header_values_are_not_read_from_the_query():
    def handler(x_token: str = Header()):
        return x_token

    assert make_client(("GET", "/", handler)).get("/?x_token=a&x-token=b").status_code == 422


def test_query_marker_with_alias_and_required():
    def handler(page_size: int = Query(20, alias="page-size"), q: str = Query(...), tags: list = Query([])):
        return [page_size, q, tags]

    test_client = make_client(("GET", "/", handler))
    assert test_client.get("/?q=x").json() == [20, "x", []]
    assert test_client.get("/?q=x&page-size=5&page_size=9&tags=a&tags=b").json() == [5, "x", ["a", "b"]]
    assert validation_errors(test_client.get("/")) == [
        {"loc": ["query", "q"], "msg": "field required", "input": None}
    ]


def test_form_marker_reads_only_form_fields():
    def handler(name: str = Form(), age: int = Form(0)):
        return [name, age]

    test_client = make_client(("POST", "/", handler))
    assert test_client.post("/", data={"name": "ann", "age": "31"}).json() == ["ann", 31]
    assert validation_errors(test_client.post("/?name=query-only", data={"age": "x"})) == [
        {"loc": ["form", "name"], "msg": "field required", "input": None},
        {"loc": ["form", "age"], "msg": "value is not a valid integer", "input": "x"},
    ]


def test_unmarked_scalars_fall_back_to_form_fields_with_query_first():
    def handler(name: str, count: int = 1, tags: list[str] = []):  # noqa: B006
        return [name, count, tags]

    test_client = make_client(("POST", "/", handler))
    assert test_client.post("/", data={"name": "form", "count": "2", "tags": ["a", "b"]}).json() == [
        "form",
        2,
        ["a", "b"],
    ]
    assert test_client.post("/?name=query", data={"name": "form"}).json() == ["query", 1, []]
    assert validation_errors(test_client.post("/", data={"count": "x"})) == [
        {"loc": ["query", "name"], "msg": "field required", "input": None},
        {"loc": ["form", "count"], "msg": "value is not a valid integer", "input": "x"},
    ]


def test_body_marker_takes_the_whole_body_with_any_type():
    def handler(value: int = Body()):
        return value * 2

    test_client = make_client(("POST", "/", handler))
    assert test_client.post("/", json=21).json() == 42
    assert validation_errors(test_client.post("/", json="21")) == [
        {"loc": ["body"], "msg": "value is not a valid integer", "input": "21"}
    ]


def test_optional_body_uses_its_default_when_absent():
    def handler(payload: Optional[dict] = Body(None)):
        return {"payload": payload}

    test_client = make_client(("POST", "/", handler))
    assert test_client.post("/").json() == {"payload": None}
    assert test_client.post("/", json={"a": 1}).json() == {"payload": {"a": 1}}
    assert test_client.post("/", content=b"null").json() == {"payload": None}


def test_several_body_parameters_are_embedded_by_name():
    def handler(item: dict, count: int = Body(), note: str = Body("none", alias="comment")):
        return [item, count, note]

    test_client = make_client(("POST", "/", handler))
    assert test_client.post("/", json={"item": {"a": 1}, "count": 2}).json() == [{"a": 1}, 2, "none"]
    assert test_client.post("/", json={"item": {}, "count": 2, "comment": "hi"}).json() == [{}, 2, "hi"]
    assert validation_errors(test_client.post("/", json={"count": "2"})) == [
        {"loc": ["body", "item"], "msg": "field required", "input": None},
        {"loc": ["body", "count"], "msg": "value is not a valid integer", "input": "2"},
    ]
    assert validation_errors(test_client.post("/", json=[1])) == [
        {"loc": ["body"], "msg": "value is not a valid object", "input": [1]}
    ]
    assert len(validation_errors(test_client.post("/"))) == 2


def test_path_marker():
    def handler(ident: int = Path(alias="id")):
        return ident

    assert make_client(("GET", "/things/{id}", handler)).get("/things/5").json() == 5


def test_annotated_markers():
    def handler(token: Annotated[str, Header(alias="x-api-key")], limit: Annotated[int, Query()] = 5):
        return [token, limit]

    test_client = make_client(("GET", "/", handler))
    assert test_client.get("/", headers={"X-Api-Key": "k"}).json() == ["k", 5]
    assert validation_errors(test_client.get("/?limit=2")) == [
        {"loc": ["header", "x-api-key"], "msg": "field required", "input": None}
    ]


def test_request_parameter_gets_the_raw_request():
    seen = {}

    def handler(request: Request, name: str = "x"):
        seen.update(
            method=request.method,
            path=request.path,
            query=request.query,
            query_params=request.query_params,
            token=request.header("X-Token"),
            absent=request.header("absent", "fallback"),
            content_type=request.content_type,
            body=request.body(),
            json=request.json(),
            client=request.client,
        )
        return "ok"

    test_client = make_client(("POST", "/raw", handler))
    response = test_client.post(
        "/raw?a=1&a=2&b=",
        json={"k": [1]},
        headers={"X-Token": "t", "Content-Type": "application/json; charset=utf-8"},
    )
    assert response.json() == "ok"
    assert seen == {
        "method": "POST",
        "path": "/raw",
        "query": [("a", "1"), ("a", "2"), ("b", "")],
        "query_params": {"a": "1", "b": ""},
        "token": "t",
        "absent": "fallback",
        "content_type": "application/json",
        "body": b'{"k": [1]}',
        "json": {"k": [1]},
        "client": ("testclient", 50000),  # as Starlette's TestClient has it
    }


# --- dataclass bodies -----------------------------------------------------------------------------


@dataclass
class Address:
    city: str
    zip_code: Optional[str] = None


@dataclass
class Person:
    name: str
    age: int
    height: float = 1.7
    tags: list[str] = field(default_factory=list)
    address: Optional[Address] = None


@dataclass
class Positive:
    value: int

    def __post_init__(self):
        if self.value <= 0:
            raise ValueError("value must be positive")


people_app = App()


@people_app.post("/people", status_code=201)
def create_person(person: Person):
    """Create a person."""
    assert isinstance(person, Person)
    assert person.address is None or isinstance(person.address, Address)
    return person


@people_app.post("/batch")
def batch(people: list[Person]):
    return {"names": [person.name for person in people]}


@people_app.post("/positive")
def positive(body: Positive):
    return body.value


people = TestClient(people_app)


def test_dataclass_body_is_constructed_and_returned_as_json():
    response = people.post(
        "/people", json={"name": "Ann", "age": 30, "height": 2, "address": {"city": "Oslo"}}
    )
    assert response.status_code == 201
    assert response.json() == {
        "name": "Ann",
        "age": 30,
        "height": 2.0,
        "tags": [],
        "address": {"city": "Oslo", "zip_code": None},
    }


def test_dataclass_body_missing_extra_and_wrong_fields():
    response = people.post(
        "/people", json={"age": "old", "nick": "A", "address": {"town": "Oslo"}, "tags": ["a", 1]}
    )
    assert validation_errors(response) == [
        {"loc": ["body", "name"], "msg": "field required", "input": None},
        {"loc": ["body", "age"], "msg": "value is not a valid integer", "input": "old"},
        {"loc": ["body", "tags", 1], "msg": "value is not a valid string", "input": 1},
        {"loc": ["body", "address", "city"], "msg": "field required", "input": None},
        {"loc": ["body", "address", "town"], "msg": "extra field not permitted", "input": "Oslo"},
        {"loc": ["body", "nick"], "msg": "extra field not permitted", "input": "A"},
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "value is not a valid integer"),
        (1.0, "value is not a valid integer"),
        (None, "value is not a valid integer"),
    ],
)
def test_json_integers_are_strict(value, message):
    assert validation_errors(people.post("/people", json={"name": "A", "age": value})) == [
        {"loc": ["body", "age"], "msg": message, "input": value}
    ]


def test_list_of_dataclasses():
    assert people.post("/batch", json=[{"name": "A", "age": 1}, {"name": "B", "age": 2}]).json() == {
        "names": ["A", "B"]
    }
    assert validation_errors(people.post("/batch", json=[{"name": "A", "age": 1}, "B"])) == [
        {"loc": ["body", 1], "msg": "value is not a valid object", "input": "B"}
    ]
    assert validation_errors(people.post("/batch", json={"name": "A"})) == [
        {"loc": ["body"], "msg": "value is not a valid list", "input": {"name": "A"}}
    ]


def test_dataclass_post_init_value_error_is_a_422():
    assert people.post("/positive", json={"value": 3}).json() == 3
    assert validation_errors(people.post("/positive", json={"value": -1})) == [
        {"loc": ["body"], "msg": "value must be positive", "input": {"value": -1}}
    ]


ADDRESS_SCHEMA = {
    "type": "object",
    "title": "Address",
    "properties": {"city": {"type": "string"}, "zip_code": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
    "required": ["city"],
    "additionalProperties": False,
}


def test_describe_dataclass_body():
    route = people_app.describe()["routes"][0]
    assert route["status_code"] == 201
    assert route["summary"] == "Create a person."
    assert route["params"] == [{"name": "person", "in": "body", "type": "object", "required": True}]
    assert route["body"] == {
        "type": "object",
        "schema": {
            "type": "object",
            "title": "Person",
            "properties": {
                "name": {"type": "string"},
                "age": {"type": "integer"},
                "height": {"type": "number"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "address": {"anyOf": [ADDRESS_SCHEMA, {"type": "null"}]},
            },
            "required": ["name", "age"],
            "additionalProperties": False,
        },
    }
    batch_route = people_app.describe()["routes"][1]
    assert batch_route["body"]["type"] == "array"
    assert batch_route["body"]["schema"]["items"]["title"] == "Person"


@dataclass
class Node:
    label: str
    children: "list[Node]" = field(default_factory=list)


def test_recursive_dataclass():
    fresh = App()

    @fresh.post("/tree")
    def tree(root: Node):
        return {
            "label": root.label,
            "children": len(root.children),
            "grandchild": root.children[0].children[0].label,
        }

    body = {"label": "a", "children": [{"label": "b", "children": [{"label": "c"}]}]}
    assert TestClient(fresh).post("/tree", json=body).json() == {
        "label": "a",
        "children": 1,
        "grandchild": "c",
    }
    schema = fresh.describe()["routes"][0]["body"]["schema"]
    assert schema["properties"]["children"] == {"type": "array", "items": {"type": "object", "title": "Node"}}


def test_typed_dict_and_list_bodies():
    def handler(scores: dict[str, int]):
        return sum(scores.values())

    def matrix(rows: list[list[float]]):
        return [sum(row) for row in rows]

    test_client = make_client(("POST", "/scores", handler), ("POST", "/matrix", matrix))
    assert test_client.post("/scores", json={"a": 1, "b": 2}).json() == 3
    assert validation_errors(test_client.post("/scores", json={"a": "1"})) == [
        {"loc": ["body", "a"], "msg": "value is not a valid integer", "input": "1"}
    ]
    assert test_client.post("/matrix", json=[[1, 2.5], []]).json() == [3.5, 0]


def test_any_body_accepts_every_json_value():
    def echo(value: Any = Body()):
        return value

    test_client = make_client(("POST", "/", echo))
    for value in [None, 1, "s", [1, {"a": None}], {"x": [True]}]:
        assert test_client.post("/", content=json.dumps(value)).json() == value


# --- return values and responses ------------------------------------------------------------------


@pytest.mark.parametrize("value", [{"a": 1}, [1, "b"], "text", 7, 2.5, True, False, None, (1, 2)])
def test_plain_return_values_become_json(value):
    response = make_client(("GET", "/", lambda: value)).get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == (list(value) if isinstance(value, tuple) else value)


def test_str_return_is_a_json_string_and_non_ascii_is_utf8():
    response = make_client(("GET", "/", lambda: "héllo ✓")).get("/")
    assert response.content == '"héllo ✓"'.encode()


def test_non_json_return_value_raises():
    with pytest.raises(TypeError):
        make_client(("GET", "/", lambda: b"raw")).get("/")
    with pytest.raises(ValueError):
        make_client(("GET", "/", lambda: float("nan"))).get("/")


def test_route_status_code():
    fresh = App()

    @fresh.post("/things", status_code=201)
    def create():
        return {"id": 1}

    @fresh.delete("/things/{thing_id}", status_code=204)
    def remove(thing_id: int):
        return None

    test_client = TestClient(fresh)
    assert test_client.post("/things").status_code == 201
    response = test_client.delete("/things/1")
    assert response.status_code == 204
    assert response.content == b""


def test_returned_response_keeps_its_own_status():
    fresh = App()

    @fresh.post("/x", status_code=201)
    def handler():
        return JSONResponse({"queued": True}, status_code=202, headers={"X-Job": "9"})

    response = TestClient(fresh).post("/x")
    assert response.status_code == 202
    assert response.headers["x-job"] == "9"
    assert response.json() == {"queued": True}


def test_response_objects():
    text = Response("héllo", media_type="text/plain")
    assert text.body == "héllo".encode()
    assert text.headers == [("content-type", "text/plain; charset=utf-8")]
    assert (
        Response("<p/>", media_type="text/html; charset=latin-1").header("Content-Type")
        == "text/html; charset=latin-1"
    )
    assert Response("plain").header("content-type") == "text/plain; charset=utf-8"
    assert Response(b"\x00\xff").header("content-type") == "application/octet-stream"
    assert Response(None, status_code=304).body == b""
    custom = Response(
        b"x", 418, headers=[("X-A", "1"), ("x-a", "2"), ("Content-Type", "application/x-thing")]
    )
    assert custom.status_code == 418
    assert custom.headers == [("x-a", "1"), ("x-a", "2"), ("content-type", "application/x-thing")]
    json_response = JSONResponse({"b": [1, None]}, 201, {"x-y": "z"})
    assert (json_response.status_code, json_response.body) == (201, b'{"b":[1,null]}')
    assert json_response.headers == [("x-y", "z"), ("content-type", "application/json")]
    with pytest.raises(TypeError):
        Response(123)


def test_dataclass_instances_inside_json_responses():
    body = JSONResponse({"person": Person("A", 1)}).body
    assert json.loads(body) == {"person": {"name": "A", "age": 1, "height": 1.7, "tags": [], "address": None}}


def test_lone_surrogates_are_escaped():
    assert JSONResponse("\ud800").body == b'"\\ud800"'


def test_async_handlers_run_to_completion():
    async def handler(n: int):
        return n + 1

    async def suspends():
        results = await asyncio.gather(asyncio.sleep(0.01, "a"), asyncio.sleep(0, "b"))
        try:
            await asyncio.wait_for(asyncio.sleep(10), 0.01)
        except TimeoutError:
            results.append("timed out")
        return results

    test_client = make_client(("GET", "/", handler), ("GET", "/suspends", suspends))
    assert test_client.get("/?n=1").json() == 2
    assert test_client.get("/suspends").json() == ["a", "b", "timed out"]


def test_the_sandbox_event_loop_runs_timers_and_tasks_by_sleeping():
    from wasmgate._waits import SandboxEventLoop

    async def main():
        started = asyncio.get_running_loop().time()
        values = await asyncio.gather(*(asyncio.sleep(delay, delay) for delay in (0.03, 0.01, 0.02)))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.sleep(5), 0.02)
        return values, asyncio.get_running_loop().time() - started

    loop = SandboxEventLoop()
    try:
        values, elapsed = loop.run_until_complete(main())
        assert values == [0.03, 0.01, 0.02] and elapsed < 2  # the sleeps overlap; bound for a hang only
        with pytest.raises(RuntimeError, match="wait forever"):
            loop.run_until_complete(loop.create_future())  # nothing will ever resolve it
    finally:
        loop.close()


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "phrase"),
    [
        (400, "BAD_REQUEST", "Bad Request"),
        (401, "UNAUTHORIZED", "Unauthorized"),
        (403, "FORBIDDEN", "Forbidden"),
        (404, "NOT_FOUND", "Not Found"),
        (405, "METHOD_NOT_ALLOWED", "Method Not Allowed"),
        (409, "CONFLICT", "Conflict"),
        (413, "PAYLOAD_TOO_LARGE", "Content Too Large"),
        (414, "HTTP_414", "URI Too Long"),
        (416, "HTTP_416", "Range Not Satisfiable"),
        (422, "VALIDATION_ERROR", "Unprocessable Content"),
        (429, "RATE_LIMITED", "Too Many Requests"),
        (418, "HTTP_418", "I'm a Teapot"),
        (500, "HTTP_500", "Internal Server Error"),
        (599, "HTTP_599", "HTTP 599"),
    ],
)
def test_http_exception_codes_and_default_messages(status, code, phrase):
    def handler():
        raise HTTPException(status)

    response = make_client(("GET", "/", handler)).get("/")
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json() == error(code, phrase)


def test_http_exception_details_headers_and_code_override():
    def structured():
        raise HTTPException(400, {"field": "x", "why": "bad"})

    def listed():
        raise HTTPException(409, ["a", "b"])

    def numbered():
        raise HTTPException(400, 12)

    def custom():
        raise HTTPException(402, "pay up", headers={"Retry-After": "60"}, code="PAYMENT_REQUIRED")

    test_client = make_client(
        ("GET", "/structured", structured),
        ("GET", "/listed", listed),
        ("GET", "/numbered", numbered),
        ("GET", "/custom", custom),
    )
    assert test_client.get("/structured").json() == error(
        "BAD_REQUEST", "Bad Request", {"field": "x", "why": "bad"}
    )
    assert test_client.get("/listed").json() == error("CONFLICT", "Conflict", ["a", "b"])
    assert test_client.get("/numbered").json() == error("BAD_REQUEST", "12")
    response = test_client.get("/custom")
    assert response.status_code == 402
    assert response.headers["retry-after"] == "60"
    assert response.json() == error("PAYMENT_REQUIRED", "pay up")


def test_http_exception_attributes():
    exc = HTTPException(404, "gone")
    assert (exc.status_code, exc.detail, exc.code, exc.message, exc.details) == (
        404,
        "gone",
        "NOT_FOUND",
        "gone",
        {},
    )
    assert str(exc) == "404 NOT_FOUND: gone"


def test_other_handler_exceptions_propagate():
    def handler():
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        make_client(("GET", "/", handler)).get("/")


# --- routes and registration ----------------------------------------------------------------------


def test_all_method_decorators_and_general_route():
    fresh = App()

    @fresh.route("/single", methods="post")
    def single():
        return "single"

    @fresh.route("/multi", methods=["get", "POST"])
    def multi(request: Request):
        return request.method

    def which(request: Request):
        return request.method

    for method in ["put", "patch", "delete"]:
        getattr(fresh, method)("/thing")(which)

    test_client = TestClient(fresh)
    assert test_client.post("/single").json() == "single"
    assert test_client.get("/multi").json() == "GET"
    assert test_client.post("/multi").json() == "POST"
    assert test_client.put("/thing").json() == "PUT"
    assert test_client.patch("/thing").json() == "PATCH"
    assert test_client.delete("/thing").json() == "DELETE"
    response = test_client.get("/thing")
    assert response.status_code == 405
    assert response.headers["allow"] == "DELETE, PATCH, PUT"
    assert [(route["method"], route["path"]) for route in fresh.describe()["routes"]] == [
        ("POST", "/single"),
        ("GET", "/multi"),
        ("POST", "/multi"),
        ("PUT", "/thing"),
        ("PATCH", "/thing"),
        ("DELETE", "/thing"),
    ]


def test_decorators_return_the_function_unchanged():
    fresh = App()

    def handler(x: int):
        return x

    assert fresh.get("/")(handler) is handler
    assert handler(3) == 3


def test_apps_are_independent():
    first, second = App(), App()
    first.get("/only-first")(lambda: 1)
    assert TestClient(second).get("/only-first").status_code == 404
    assert second.describe() == {"routes": []}


@pytest.mark.parametrize(
    ("path", "handler", "message"),
    [
        ("/", lambda x: x, None),
        ("no-slash", lambda: 0, "must start with '/'"),
        ("/{a}/{a}", lambda a: a, "duplicate path parameter"),
        ("/{a:int}", lambda a: a, "unknown path converter"),
        ("/{a", lambda: 0, "malformed path template"),
    ],
)
def test_invalid_templates(path, handler, message):
    if message is None:
        App().get(path)(handler)
    else:
        with pytest.raises(ValueError, match=message):
            App().get(path)(handler)


def test_duplicate_routes_are_rejected():
    fresh = App()
    fresh.get("/x")(lambda: 1)
    fresh.post("/x")(lambda: 2)
    with pytest.raises(ValueError, match="already routed"):
        fresh.route("/x", ["PUT", "GET"])(lambda: 3)


class Opaque:
    pass


def _bad_annotation(value: Opaque):
    return value


def _query_dict(value: dict = Query()):
    return value


def _path_not_in_template(value: int = Path()):
    return value


def _path_with_default(name: str = "x"):
    return name


def _header_dataclass(value: Person = Header()):
    return value


def _file_in_body(upload: UploadFile = Body()):
    return upload


def _non_str_keys(value: dict[int, str]):
    return value


def _positional_only(value: int, /):
    return value


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        (_bad_annotation, "unsupported annotation"),
        (_query_dict, "a query parameter must be"),
        (_path_not_in_template, "a path parameter must appear in the path template"),
        (_path_with_default, "have no default"),
        (_header_dataclass, "a header parameter must be"),
        (_file_in_body, "cannot come from the JSON body"),
        (_non_str_keys, "dict keys must be str"),
        (_positional_only, "positional-only"),
    ],
)
def test_handler_signature_errors_are_raised_at_registration(handler, message):
    with pytest.raises(TypeError, match=message):
        App().get("/{name}")(handler)


def test_describe_markers_lists_and_defaults():
    fresh = App()

    @fresh.post("/items/{item_id}")
    def item(
        request: Request,
        item_id: int,
        tags: list[str] = ["a"],  # noqa: B006
        ratio: Optional[float] = None,
        x_token: str = Header(),
        note: str = Form("n"),
        avatar: Optional[UploadFile] = None,
        photos: list[UploadFile] = [],  # noqa: B006
    ):
        return None

    assert fresh.describe()["routes"][0]["params"] == [
        {"name": "item_id", "in": "path", "type": "integer", "required": True},
        {
            "name": "tags",
            "in": "form",
            "type": "array",
            "items": "string",
            "required": False,
            "default": ["a"],
        },
        {"name": "ratio", "in": "form", "type": "number", "required": False, "default": None},
        {"name": "x-token", "in": "header", "type": "string", "required": True},
        {"name": "note", "in": "form", "type": "string", "required": False, "default": "n"},
        {"name": "avatar", "in": "file", "type": "file", "required": False, "default": None},
        {"name": "photos", "in": "file", "type": "array", "items": "file", "required": False, "default": []},
    ]


def test_describe_embedded_body():
    fresh = App()

    @fresh.put("/pair")
    def pair(left: dict, right: Optional[list[Address]] = None):
        return None

    assert fresh.describe()["routes"][0]["body"] == {
        "type": "object",
        "schema": {
            "type": "object",
            "properties": {
                "left": {"type": "object"},
                "right": {"anyOf": [{"type": "array", "items": ADDRESS_SCHEMA}, {"type": "null"}]},
            },
            "required": ["left"],
        },
    }


# --- uploads --------------------------------------------------------------------------------------


def test_upload_file_from_path_opens_lazily(tmp_path):
    missing_path = tmp_path / "never-created"
    UploadFile(filename="x", path=str(missing_path))  # nothing is opened yet
    path = tmp_path / "0"
    path.write_bytes(b"0123456789")
    upload = UploadFile(
        filename="digits.txt", content_type="text/plain", size=10, path=str(path), field="doc"
    )
    assert (upload.filename, upload.content_type, upload.size, upload.field) == (
        "digits.txt",
        "text/plain",
        10,
        "doc",
    )
    assert upload._file is None
    assert upload.read(3) == b"012"
    assert upload.read() == b"3456789"
    assert upload.seek(5) == 5
    assert upload.file.read(2) == b"56"
    upload.close()
    assert upload.file.closed


def test_upload_file_from_bytes():
    with UploadFile.from_bytes(b"abc", filename="a.bin", field="blob") as upload:
        assert (upload.filename, upload.content_type, upload.size, upload.field) == (
            "a.bin",
            "application/octet-stream",
            3,
            "blob",
        )
        assert upload.read() == b"abc"
        upload.seek(1)
        assert upload.read(5) == b"bc"
    assert upload.file.closed
    assert "a.bin" in repr(upload)


def test_upload_file_needs_a_source():
    with pytest.raises(ValueError):
        UploadFile(filename="x")


def test_uploads_in_the_sandbox_shape(tmp_path):
    """The glue builds Requests with path-backed uploads and a stdin-like body reader."""
    (tmp_path / "0").write_bytes(b"first")
    (tmp_path / "1").write_bytes(b"second!")
    fresh = App()

    @fresh.post("/many")
    def many(files: list[UploadFile], extra: Optional[UploadFile] = None, label: str = Form()):
        return {"sizes": [len(f.read()) for f in files], "extra": extra, "label": label}

    uploads = [
        UploadFile(filename="a", content_type="text/plain", size=5, path=str(tmp_path / "0"), field="files"),
        UploadFile(filename="b", content_type="text/plain", size=7, path=str(tmp_path / "1"), field="files"),
    ]

    def body_reader():
        raise AssertionError("the body must not be read")

    request = Request(
        "post",
        "/many",
        headers=[("Content-Type", "multipart/form-data; boundary=x")],
        form=[("label", "L")],
        files=uploads,
        body_reader=body_reader,
    )
    response = fresh.dispatch(request)
    assert response.status_code == 200
    assert json.loads(response.body) == {"sizes": [5, 7], "extra": None, "label": "L"}
    assert ("content-type", "application/json") in response.headers


def test_several_files_under_one_field_with_the_client():
    fresh = App()

    @fresh.post("/many")
    def many(files: list[UploadFile]):
        return [(f.filename, f.content_type, f.read().decode()) for f in files]

    test_client = TestClient(fresh)
    response = test_client.post(
        "/many", files=[("files", ("a.txt", "A")), ("files", ("b.json", b"{}", "x/y"))]
    )
    assert response.json() == [["a.txt", "text/plain", "A"], ["b.json", "x/y", "{}"]]
    assert validation_errors(test_client.post("/many", files={"other": ("c", b"")})) == [
        {"loc": ["file", "files"], "msg": "field required", "input": None}
    ]


def test_upload_with_form_marker():
    def handler(doc: UploadFile = Form()):
        return doc.read().decode()

    assert make_client(("POST", "/", handler)).post("/", files={"doc": ("d", b"text")}).json() == "text"


# --- Request and the body reader ------------------------------------------------------------------


def test_body_reader_is_called_once_and_only_when_needed():
    calls = []

    def reader():
        calls.append(1)
        return b'{"values": [1, 2]}'

    request = Request("POST", "/sum", body_reader=reader)
    assert app.dispatch(request).body == b'{"sum":3}'
    assert request.body() == b'{"values": [1, 2]}'
    assert request.json() == {"values": [1, 2]}
    assert calls == [1]

    untouched = []
    assert (
        app.dispatch(Request("GET", "/png", body_reader=lambda: untouched.append(1) or b"")).status_code
        == 200
    )
    assert untouched == []


def test_request_construction():
    request = Request("get", "/p", headers=[("X-Upper", "v")], query=[("a", "1")])
    assert (request.method, request.path, request.headers) == ("GET", "/p", [("x-upper", "v")])
    assert request.body() == b""
    assert request.content_type == ""
    assert Request(body=b"x").body() == b"x"
    with pytest.raises(ValueError):
        Request(body=b"", body_reader=lambda: b"")
    with pytest.raises(ValueError):
        Request("GET", "relative")


def test_dispatch_returns_response_objects():
    response = app.dispatch(Request("GET", "/hello/bob", query=[("times", "1")]))
    assert isinstance(response, Response)
    assert (response.status_code, response.headers, response.body) == (
        200,
        [("content-type", "application/json")],
        b'{"message":"hello bob"}',
    )


# --- the test client ------------------------------------------------------------------------------


def test_client_response_helpers():
    response = client.get("/hello/wörld")
    assert response.text == '{"message":"hello wörld"}'
    assert response.headers.get("CONTENT-TYPE") == "application/json"
    assert "content-type" in response.headers
    assert response.headers.get_list("content-type") == ["application/json"]
    assert dict(response.headers) == {"content-type": "application/json"}
    assert len(response.headers) == 1
    assert repr(response) == "<ClientResponse [200]>"


def test_client_explicit_content_type_is_kept():
    seen = []

    def handler(request: Request):
        seen.append(request.content_type)

    test_client = make_client(("POST", "/", handler))
    test_client.post("/", json=[1], headers={"Content-Type": "application/vnd.x+json"})
    test_client.post("/", content="raw")
    test_client.post("/", data={"a": "1"})
    assert seen == ["application/vnd.x+json", "", "application/x-www-form-urlencoded"]
