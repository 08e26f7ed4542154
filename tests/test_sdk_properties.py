"""Property tests for the guest SDK: JSON round trips and string coercions."""

import json
import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from wasmgate import App, Body, HTTPException, Request
from wasmgate.testing import TestClient

app = App()


@app.post("/echo")
def echo(value: Any = Body()):
    return value


@app.post("/echo-object")
def echo_object(body: dict):
    return body


@app.get("/int")
def get_int(n: int):
    return n


@app.get("/float")
def get_float(x: float):
    return x


@app.get("/tags")
def get_tags(tag: list[str] = []):  # noqa: B006
    return tag


@app.get("/segment/{name}")
def get_segment(name: str):
    return name


@app.get("/fail")
def fail(message: str):
    raise HTTPException(400, message)


client = TestClient(app)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=10,
)


@given(json_values)
def test_any_json_value_echoes_back_equal(value):
    response = client.post("/echo", content=json.dumps(value))
    assert response.status_code == 200
    assert response.json() == value


@given(st.dictionaries(st.text(), json_values, max_size=4))
def test_json_objects_echo_back_equal(value):
    assert client.post("/echo-object", json=value).json() == value


@given(st.integers())
def test_integers_round_trip_through_the_query(n):
    assert client.get("/int", params={"n": str(n)}).json() == n


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_round_trip_through_the_query(x):
    result = client.get("/float", params={"x": repr(x)}).json()
    assert result == x and math.copysign(1, result) == math.copysign(1, x)


@given(st.lists(st.text()))
def test_repeated_query_keys_round_trip_as_lists(tags):
    assert client.get("/tags", params=[("tag", tag) for tag in tags]).json() == tags


@given(st.text(min_size=1).filter(lambda text: "/" not in text))
def test_any_segment_is_a_path_parameter(name):
    response = app.dispatch(Request("GET", "/segment/" + name))
    assert json.loads(response.body) == name


@given(st.text())
def test_http_exception_messages_round_trip(message):
    response = client.get("/fail", params={"message": message})
    assert response.status_code == 400
    assert response.json() == {"error": {"code": "BAD_REQUEST", "message": message, "details": {}}}


@given(st.text().filter(lambda text: not text.strip("+-").isascii() or not text.lstrip("+-").isdigit()))
def test_non_integers_are_rejected_with_the_input_echoed(text):
    response = client.get("/int", params={"n": text})
    assert response.status_code == 422
    assert response.json()["error"]["details"]["errors"] == [
        {"loc": ["query", "n"], "msg": "value is not a valid integer", "input": text}
    ]


@given(st.text(alphabet=st.sampled_from("aZ09_.~-/%é ?#")))
def test_the_asgi_adapter_sends_a_path_as_quote_would(path):
    # An ASGI app's `raw_path` skips `urllib.parse.quote` for a path it would leave as it is.
    from urllib.parse import quote

    from wasmgate._asgi import _UNQUOTED

    if _UNQUOTED.fullmatch(path):
        assert quote(path) == path
    else:
        assert quote(path) != path
