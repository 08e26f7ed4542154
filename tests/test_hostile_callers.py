"""Hostile callers: whatever a caller sends to `/run/{id}/...`, the gateway answers soundly.

A real `wasmgate serve` (two processes, 1 MB body cap, 64 KB spooling threshold) serves the
example API (examples/hello.py) and the probe API (tests/apps/probe.py). Hypothesis sends
them odd methods, hostile paths (dot segments, percent-encoding valid and not, NUL, 10-50 KB
paths), query strings, hundreds of headers with odd but legal bytes, keys, JSON of any shape
and nesting (to a few thousand levels), multipart bodies broken in every way, and bodies over
the cap, over raw sockets where httpx would refuse or normalise what is sent. Every answer:

- arrives (no dropped connection, no hang) and is well-framed HTTP;
- is never a 5xx of the gateway's own: a 5xx is a `SANDBOX_*` error that came from the
  guest (it carries `X-Wasmgate-Fuel`) or a documented 503 with `Retry-After`;
- if an error, has the body `{"error": {"code", "message", "details"}}` with the code the
  README documents for its status, and no host path in it.

Where a round trip is exact it is checked (the path parameter, the query and the headers
the guest sees, JSON echoed back, uploaded bytes). schemathesis then runs its checks
against the OpenAPI document the gateway serves for the example API. At the end no scratch
file is left under the data dir and the gateway's log holds no unhandled exception.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qsl, quote, unquote

import h11
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, note, settings, strategies as st
from python_multipart.multipart import parse_options_header
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.errors import SANDBOX_STATUS
from gateway_support import (  # noqa: F401
    ADMIN,
    ADMIN_TOKEN,
    ROOT,
    SOURCES,
    ServerProcess,
    data_dir_sharing_store,
    deploy_request,
    gateway_sources,
)
from wasmgate._errors import error_code as guest_error_code

BODY_LIMIT = 1 << 20
TIMEOUT = 30  # seconds: a wide bound against a hang, never a synchronisation
# h11 (uvicorn's parser) refuses a request head of more than 16 KiB that it has not seen
# whole (test_protocol_errors_have_the_json_error_shape); heads up to this size are accepted
# however they arrive. Only the 10-50 KB paths go past it, sent in one write on loopback.
HEAD_BUDGET = 16 * 1024 - 512
UNHANDLED = ("Exception in ASGI application", "unhandled error in", "Task exception was never retrieved")
# What the gateway answers itself, by status (README "Errors").
GATEWAY_CODES = {
    401: {"AUTH_MISSING"},
    403: {"AUTH_INVALID"},
    404: {"NOT_FOUND"},
    405: {"METHOD_NOT_ALLOWED"},
    413: {"PAYLOAD_TOO_LARGE"},
    422: {"VALIDATION_ERROR"},
    429: {"RATE_LIMITED", "QUOTA_EXCEEDED"},
    503: {"OVERLOADED", "API_BUSY"},
}
PROBE_LIMITS = {"memory_mb": 64, "fuel": 500_000_000, "timeout_ms": 2000}

FAST = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


@pytest.fixture(scope="module")
def gateway(gateway_sources, tmp_path_factory, bundle_store):
    root = tmp_path_factory.mktemp("hostile-callers")
    data_dir = data_dir_sharing_store(root / "data", bundle_store)
    server = ServerProcess(
        data_dir, root / "server.log", WASMGATE_MAX_BODY_MB="1", WASMGATE_SPOOL_KB="64", WASMGATE_WORKERS="2"
    )
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
            apis = {}
            for name, fields in (("hello", {}), ("probe", {"limits": PROBE_LIMITS})):
                response = client.post("/v1/apis", headers=ADMIN, **deploy_request(name, SOURCES[name], **fields))
                assert response.status_code == 201, response.text
                apis[name] = response.json()
            yield SimpleNamespace(server=server, client=client, hello=apis["hello"], probe=apis["probe"])
    finally:
        server.stop()
    assert list((data_dir / "requests").glob("*")) == []
    log = server.log_path.read_text(errors="replace")
    assert [word for word in UNHANDLED if word in log] == [], log[-5000:]


# -- talking to the gateway -------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    head: bool = False  # the answer to a HEAD request: no body

    def json(self):
        return json.loads(self.body)


def from_response(response) -> Answer:
    """An httpx or schemathesis response (whose header values are lists) as an Answer."""
    headers = {k.lower(): v[-1] if isinstance(v, list) else v for k, v in response.headers.items()}
    return Answer(response.status_code, headers, response.content)


def send_raw(gw, request: bytes, method: str = "GET") -> Answer:
    """Send bytes as they are; read the answer to the end (every request says Connection: close)."""
    received = bytearray()
    with socket.create_connection(("127.0.0.1", gw.server.port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        while chunk := sock.recv(1 << 16):
            received += chunk
    assert received, "the gateway closed the connection without an answer"
    return parse_answer(bytes(received), method)


def parse_answer(data: bytes, method: str) -> Answer:
    """The one answer in `data`, parsed (and its framing checked) by h11 as a client would."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method=method, target="/", headers=[("Host", "gateway")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    conn.receive_data(b"")
    response, body = None, bytearray()
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            break
        elif event is h11.NEED_DATA:
            raise AssertionError(f"the answer is cut short: {data[:300]!r}")
    assert response is not None
    headers = {name.decode().lower(): value.decode("latin-1") for name, value in response.headers}
    return Answer(response.status_code, headers, bytes(body), head=method == "HEAD")


def request_head(method: bytes, target: bytes, headers: list = (), body: bytes | None = None) -> bytes:
    """A request's bytes; each header is a (name, value) pair or a raw line."""
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    lines += [header if isinstance(header, bytes) else header[0] + b": " + header[1] for header in headers]
    if body is not None:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


def key_header(api: dict) -> tuple[bytes, bytes]:
    return (b"X-API-Key", api["api_key"].encode())


def assert_sound(gw, answer: Answer | httpx.Response) -> Answer:
    """The properties every answer has, whatever was asked."""
    if not isinstance(answer, Answer):
        answer = from_response(answer)
    assert 200 <= answer.status < 600, answer
    assert answer.headers.get("x-request-id"), answer.headers
    if answer.status < 400:
        return answer
    assert answer.headers.get("content-type", "").startswith("application/json"), answer
    if answer.head:
        assert answer.status < 500 or "x-wasmgate-fuel" in answer.headers or answer.status == 503, answer
        return answer
    body = answer.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"code", "message", "details"}, body
    assert isinstance(error["message"], str) and isinstance(error["details"], dict), body
    code = error["code"]
    from_guest = "x-wasmgate-fuel" in answer.headers
    if answer.status >= 500:
        if code in SANDBOX_STATUS:
            assert from_guest and SANDBOX_STATUS[code] == answer.status, answer
        else:  # the gateway's own 5xx: only shedding load, and it says when to come back
            assert answer.status == 503 and code in GATEWAY_CODES[503] and "retry-after" in answer.headers, answer
    elif from_guest:  # the SDK's errors: routing, validation, HTTPException
        assert code == guest_error_code(answer.status), answer
    else:
        assert code in GATEWAY_CODES.get(answer.status, ()), answer
    text = answer.body.decode("utf-8", "replace")
    for secret in (str(gw.server.data_dir.resolve()), str(ROOT), ADMIN_TOKEN):
        assert secret not in text
    return answer


def assert_no_scratch_left(gw) -> None:
    """Nothing of a request's body is left once it was answered (removed right after the
    answer is sent: waited for, up to a bound that only a leak reaches)."""
    deadline = time.monotonic() + 10
    while left := list((gw.server.data_dir / "requests").glob("*")):
        assert time.monotonic() < deadline, left
        time.sleep(0.005)


# -- strategies -------------------------------------------------------------------------------

TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Characters a request target may hold as they are (RFC 3986 pchar, plus '/').
PATH_CHARS = "abcxyzABC019-._~!$&'()*+,;=:@"
HOSTILE_SEGMENTS = [
    "..", ".", "...", "%2e%2e", "%2E%2E", ".%2e", "%2e.", "%2f", "%2F..%2F..", "%5c..%5c", "%zz", "%", "%0",
    "%g0", "%00", "a%00b", "%ff", "%c0%af", "%e2%80%ae", "%ed%a0%80", "%25", "%252e%252e", "a%20b",
    "%0d%0aX-Evil:%201", "~root", "*", "@", ":", ";x=1", "hello", "sum", "openapi.json", "docs", "",
    "\\..\\..", "%f0%9f%92%a9",
]
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]  # what /run/... routes
ODD_METHODS = [
    "TRACE", "PROPFIND", "MKCOL", "M-SEARCH", "BREW", "get", "Post", "X" * 200, "WASMGATE-WARM", "A!#$%&'*+-.^_`|~",
]

percent_bytes = st.binary(min_size=1, max_size=12).map(lambda data: "".join(f"%{byte:02X}" for byte in data))
segment = st.one_of(
    st.sampled_from(HOSTILE_SEGMENTS),
    st.text(PATH_CHARS, max_size=20),
    percent_bytes,
    st.text(max_size=10).map(lambda text: quote(text, safe="")),
)
long_segment = st.integers(10_000, 50_000).flatmap(
    lambda n: st.sampled_from(["a" * n, "%2e" * (n // 3), "%zz" * (n // 3)])
)


def counts(most: int) -> st.SearchStrategy[int]:
    """How many of something: a few, or now and then hundreds (lists alone stay short)."""
    return st.one_of(st.integers(0, 10), st.sampled_from([most // 4, most // 2, most]))


@st.composite
def targets(draw, gw) -> tuple[str, str]:
    """(which API, a request target under /run/...), hostile in every part of the path."""
    api = draw(st.sampled_from(["hello", "probe"]))
    api_id = getattr(gw, api)["id"]
    prefixes = [f"/run/{api_id}/", f"/run/{api_id}/hello/", f"/run/{api_id}", "/run/", "/run/no-such-api/"]
    prefix = draw(st.sampled_from(prefixes))
    segments = draw(st.lists(segment, max_size=8))
    if draw(st.integers(0, 3)) == 0:  # one 10-50 KB segment, sent in one write (see HEAD_BUDGET)
        segments.insert(draw(st.integers(0, len(segments))), draw(long_segment))
    return api, prefix + "/".join(segments)


query_piece = st.one_of(
    st.text(PATH_CHARS + "/?", max_size=8),
    st.sampled_from(["%zz", "%", "%0", "%00", "%ff", "%2B", "+", "%26", "%3D", "%e2%98%83", "%ed%a0%80", "=", "&"]),
    percent_bytes,
)
query_text = st.lists(query_piece, max_size=6).map("".join)


@st.composite
def query_strings(draw) -> str:
    keys = draw(st.lists(query_text, min_size=1, max_size=5))  # a small pool: keys repeat
    count = draw(counts(200))
    pairs = draw(st.lists(st.tuples(st.sampled_from(keys), st.none() | query_text), min_size=count, max_size=count))
    query = "&".join(key if value is None else f"{key}={value}" for key, value in pairs)[: HEAD_BUDGET - 1_000]
    if draw(st.integers(0, 9)) == 0:  # now and then a huge value, as much as the head budget allows
        query += f"&{draw(st.sampled_from(keys))}=" + "v" * (HEAD_BUDGET - 1_000 - len(query))
    return query


header_name = st.text(TOKEN_CHARS, min_size=1, max_size=24).map(lambda name: "x-h-" + name)
# Field values as RFC 9110 allows them: visible ASCII, obs-text (0x80-0xff), and SP/HTAB inside.
header_value = st.binary(max_size=64).map(
    lambda data: bytes(b if 0x21 <= b <= 0x7E or b >= 0x80 else (0x20 if b % 2 else 0x09) for b in data).strip(b" \t")
)


@st.composite
def header_sets(draw) -> list[tuple[bytes, bytes]]:
    """Up to hundreds of headers, now and then one up to ~14 KB, within h11's head budget."""
    count = draw(counts(300))
    headers = draw(st.lists(st.tuples(header_name.map(str.encode), header_value), min_size=count, max_size=count))
    if draw(st.booleans()):
        headers.insert(draw(st.integers(0, len(headers))), (b"x-h-big", b"b" * draw(st.integers(1_000, 14_000))))
    kept, size = [], 0
    for name, value in headers:
        size += len(name) + len(value) + 4
        if size > HEAD_BUDGET - 600:
            break
        kept.append((name, value))
    return kept


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**256), 2**256), st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=60,
)


# -- methods and paths ------------------------------------------------------------------------


@FAST
@given(data=st.data())
def test_any_method_on_any_path(gateway, data):
    api, target = data.draw(targets(gateway))
    method = data.draw(st.sampled_from(METHODS + ODD_METHODS))
    body = data.draw(st.none() | st.binary(max_size=64))
    request = request_head(method.encode(), target.encode(), [key_header(getattr(gateway, api))], body)
    answer = assert_sound(gateway, send_raw(gateway, request, method))
    path = unquote(target, errors="replace")  # what the router matches
    prefixes = [f"/run/{api['id']}" for api in (gateway.hello, gateway.probe)]
    known_api = any(path == prefix or path.startswith(prefix + "/") for prefix in prefixes)
    if method not in METHODS:  # refused by the router, whether or not the path names an API
        assert answer.status in (404, 405) and "x-wasmgate-fuel" not in answer.headers, answer
    elif not known_api:
        assert answer.status == 404 and "x-wasmgate-fuel" not in answer.headers, answer
    elif "\n" in path:  # see test_a_newline_in_the_path_reaches_the_guest
        assert answer.status == 404 or "x-wasmgate-fuel" in answer.headers, answer
    else:  # past the gateway's checks, every answer is the guest's: nothing reaches the control plane
        assert "x-wasmgate-fuel" in answer.headers, answer
    assert_no_scratch_left(gateway)


@FAST
@given(name=segment.filter(bool) | long_segment)
def test_the_path_parameter_arrives_percent_decoded(gateway, name):
    target = f"/run/{gateway.hello['id']}/hello/{name}".encode()
    answer = assert_sound(gateway, send_raw(gateway, request_head(b"GET", target, [key_header(gateway.hello)])))
    decoded = unquote(name, errors="replace")
    if "/" in decoded:  # more segments than the route has
        assert answer.status == 404
    else:
        assert (answer.status, answer.json()) == (200, {"message": "hello " + decoded})


@pytest.mark.parametrize("name", ["x%0A", "x%0Ay", "%0A%0A"])
def test_a_newline_in_the_path_reaches_the_guest(gateway, name):
    target = f"/run/{gateway.hello['id']}/hello/{name}".encode()
    answer = assert_sound(gateway, send_raw(gateway, request_head(b"GET", target, [key_header(gateway.hello)])))
    assert (answer.status, answer.json()) == (200, {"message": "hello " + unquote(name)})


# -- query strings ----------------------------------------------------------------------------


@FAST
@given(query=query_strings())
def test_the_query_arrives_as_the_gateway_parsed_it(gateway, query):
    target = f"/run/{gateway.probe['id']}/mirror?{query}".encode()
    request = request_head(b"POST", target, [key_header(gateway.probe)], b"")
    assert len(request) <= HEAD_BUDGET
    answer = assert_sound(gateway, send_raw(gateway, request, "POST"))
    assert answer.status == 200, answer
    assert answer.json()["query"] == [list(pair) for pair in parse_qsl(query, keep_blank_values=True)]
    # The example's coerced parameter: repeated, missing, invalid or huge, never the gateway's failure.
    target = f"/run/{gateway.hello['id']}/hello/q?{query}".encode()
    answer = assert_sound(gateway, send_raw(gateway, request_head(b"GET", target, [key_header(gateway.hello)])))
    assert "x-wasmgate-fuel" in answer.headers


# -- headers and keys -------------------------------------------------------------------------


@FAST
@given(headers=header_sets())
def test_hundreds_of_odd_headers_reach_the_guest_byte_exact(gateway, headers):
    target = f"/run/{gateway.probe['id']}/mirror".encode()
    request = request_head(b"POST", target, [key_header(gateway.probe), *headers], b"")
    assert len(request) <= HEAD_BUDGET
    answer = assert_sound(gateway, send_raw(gateway, request, "POST"))
    assert answer.status == 200, answer
    seen = [tuple(pair) for pair in answer.json()["headers"] if pair[0].startswith("x-h-")]
    assert seen == [(name.decode().lower(), value.decode("latin-1")) for name, value in headers]
    assert not [pair for pair in answer.json()["headers"] if pair[0] == "x-api-key"]


@FAST
@given(
    key=st.one_of(
        st.just(""),
        st.text(TOKEN_CHARS, max_size=200),
        st.integers(1, 60).map(lambda n: "wg_" + "a" * n),
        header_value.filter(bool).map(lambda value: value.decode("latin-1")),
        st.integers(1_000, 12_000).map(lambda n: "k" * n),
    ),
    where=st.sampled_from(["x-api-key", "bearer", "both-other", "none"]),
)
def test_a_wrong_or_missing_key_never_reaches_the_guest(gateway, key, where):
    other = gateway.probe["api_key"]  # a real key, of another API
    headers = {
        "x-api-key": [(b"X-API-Key", key.encode("latin-1"))],
        "bearer": [(b"Authorization", b"Bearer " + key.encode("latin-1"))],
        "both-other": [(b"X-API-Key", other.encode()), (b"Authorization", b"Bearer " + other.encode())],
        "none": [],
    }[where]
    target = f"/run/{gateway.hello['id']}/hello/x".encode()
    answer = assert_sound(gateway, send_raw(gateway, request_head(b"GET", target, headers)))
    assert answer.status in (401, 403) and "x-wasmgate-fuel" not in answer.headers, answer
    if where == "none":
        assert answer.json()["error"]["code"] == "AUTH_MISSING"


# -- JSON bodies ------------------------------------------------------------------------------


@FAST
@given(value=json_values)
def test_any_json_value_round_trips_through_the_sandbox(gateway, value):
    probe = {"X-API-Key": gateway.probe["api_key"], "content-type": "application/json"}
    response = gateway.client.post(gateway.probe["endpoint"] + "/json", headers=probe, content=json.dumps(value))
    assert_sound(gateway, response)
    assert response.status_code == 200 and response.json() == value, response.text[:500]
    hello = {"X-API-Key": gateway.hello["api_key"], "content-type": "application/json"}
    for body in (value, {"values": value}):
        response = gateway.client.post(gateway.hello["endpoint"] + "/sum", headers=hello, content=json.dumps(body))
        assert "x-wasmgate-fuel" in assert_sound(gateway, response).headers


@st.composite
def nested_json(draw) -> tuple[str, int, bool]:
    """Raw JSON text nested `depth` levels (arrays and objects mixed), maybe cut short."""
    depth = draw(st.one_of(st.integers(0, 140), st.integers(100, 3_000)))
    kinds = draw(st.lists(st.booleans(), min_size=depth, max_size=depth))
    opening = "".join('{"k":' if kind else "[" for kind in kinds)
    text = opening + "1" + "".join("}" if kind else "]" for kind in reversed(kinds))
    cut = draw(st.booleans()) and depth > 0
    if cut:
        text = text[: draw(st.integers(0, len(text) - 1))]
    return text, depth, cut


@FAST
@given(case=nested_json())
def test_json_nested_thousands_deep_is_the_caller_s_error(gateway, case):
    text, depth, cut = case
    probe = {"X-API-Key": gateway.probe["api_key"], "content-type": "application/json"}
    response = gateway.client.post(gateway.probe["endpoint"] + "/json", headers=probe, content=text)
    answer = assert_sound(gateway, response)
    code = answer.json()["error"]["code"] if answer.status >= 400 else None
    opened = text.count("[") + text.count("{")
    if opened > 128:  # refused before parsing, whole or cut
        assert (answer.status, code) == (422, "VALIDATION_ERROR"), answer
    elif not cut:
        assert answer.status == 200 and answer.json() == json.loads(text)
    else:  # the probe lets the parser's ValueError escape: the API's failure, typed
        assert (answer.status, code) in ((500, "SANDBOX_ERROR"), (200, None)), answer
    hello = {"X-API-Key": gateway.hello["api_key"], "content-type": "application/json"}
    response = gateway.client.post(gateway.hello["endpoint"] + "/sum", headers=hello, content=text)
    answer = assert_sound(gateway, response)
    if opened > 128:
        assert (answer.status, answer.json()["error"]["code"]) == (422, "VALIDATION_ERROR")


ODD_BODIES = [
    b"\xef\xbb\xbf{}", b'{"values": [NaN]}', b'{"values": [1e999]}', b"\xff\xfe{\x00}\x00", b'"\\ud800"', b"{" * 20_000,
    b"1" * 5_000, b'{"values": [' + b"9" * 5_000 + b"]}",
]
ODD_CONTENT_TYPES = [
    "application/json", "application/json; charset=utf-16", "text/plain", "", "application/x-www-form-urlencoded",
    "application/json;;;=", "multipart/mixed", "APPLICATION/JSON",
]


@FAST
@given(body=st.binary(max_size=300) | st.sampled_from(ODD_BODIES), content_type=st.sampled_from(ODD_CONTENT_TYPES))
def test_bodies_that_are_not_json(gateway, body, content_type):
    for api, path in ((gateway.hello, "/sum"), (gateway.probe, "/json"), (gateway.probe, "/echo")):
        headers = {"X-API-Key": api["api_key"], "content-type": content_type}
        assert_sound(gateway, gateway.client.post(api["endpoint"] + path, headers=headers, content=body))


# -- multipart --------------------------------------------------------------------------------

ESCAPE_MARKER = f"wasmgate-{secrets.token_hex(6)}-escape"
FILENAMES = [
    b"photo.png", b"../../../../../../tmp/" + ESCAPE_MARKER.encode(), b"..\\..\\..\\tmp\\" + ESCAPE_MARKER.encode(),
    b"/etc/passwd", b"..", b".", b"", b"a/b/c.txt", b"a\x00b.txt", b"\xff\xfe\xfd.bin", b"C:\\Windows\\win.ini", b"con",
    b"x" * 3_000, b"caf\xc3\xa9.txt", b"\xe2\x80\xae.exe", b"\r\n",
]


@dataclass
class Part:
    name: bytes
    filename: bytes | None
    data: bytes
    content_type: bytes | None = None
    extended: bool = False  # the filename as RFC 5987 filename*=utf-8''...

    @property
    def well_formed(self) -> bool:
        """A raw CR or LF in a quoted filename ends its header line: the body is broken."""
        return self.extended or self.filename is None or not (b"\r" in self.filename or b"\n" in self.filename)

    def render(self, boundary: bytes) -> bytes:
        disposition = b'form-data; name="' + self.name + b'"'
        if self.filename is not None:
            if self.extended:
                disposition += b"; filename*=UTF-8''" + quote(self.filename, safe="").encode()
            else:
                disposition += b'; filename="' + self.filename.replace(b'"', b'\\"') + b'"'
        head = b"Content-Disposition: " + disposition + b"\r\n"
        if self.content_type is not None:
            head += b"Content-Type: " + self.content_type + b"\r\n"
        return b"--" + boundary + b"\r\n" + head + b"\r\n" + self.data + b"\r\n"


parts = st.builds(
    Part,
    name=st.sampled_from([b"file", b"label", b"f\xc3\xa9", b"a b", b"x" * 100]),
    filename=st.none() | st.sampled_from(FILENAMES),
    data=st.binary(max_size=2_000).filter(lambda data: b"--bnd" not in data),
    content_type=st.none() | st.sampled_from([b"text/plain", b"application/octet-stream", b"\xff/\xfe", b"x" * 300]),
    extended=st.booleans(),
)


BREAKAGES = ["no-boundary", "wrong-boundary", "truncated", "huge-header", "many-parts", "no-disposition", "garbage"]
MISSING_BOUNDARIES = ["multipart/form-data", "multipart/form-data; boundary=", 'multipart/form-data; boundary=""']


@st.composite
def multipart_bodies(draw) -> tuple[str, bytes, list[Part] | None]:
    """(content type, body, the parts if the body is well-formed)."""
    boundary = b"bnd" + draw(st.sampled_from([b"", b"-x", b"'()+_,-./:=?", b"q" * 60]))
    chosen = draw(st.lists(parts, max_size=8))
    body = b"".join(part.render(boundary) for part in chosen) + b"--" + boundary + b"--\r\n"
    content_type = "multipart/form-data; boundary=" + boundary.decode()
    broken = draw(st.sampled_from([None, None, None, *BREAKAGES]))
    if broken == "no-boundary":
        content_type = draw(st.sampled_from(MISSING_BOUNDARIES))
    elif broken == "wrong-boundary":
        content_type = "multipart/form-data; boundary=other"
    elif broken == "truncated":
        body = body[: draw(st.integers(0, max(0, len(body) - 5)))]
    elif broken == "huge-header":
        header = b"X-Big: " + b"h" * draw(st.integers(4_000, 200_000)) + b"\r\n"
        body = b"--" + boundary + b"\r\n" + header + b'Content-Disposition: form-data; name="a"\r\n\r\nv\r\n' + body
    elif broken == "many-parts":
        count = draw(st.integers(1_001, 5_000))
        body = Part(b"n", None, b"v").render(boundary) * count + body
    elif broken == "no-disposition":
        body = b"--" + boundary + b"\r\nContent-Type: text/plain\r\n\r\nv\r\n" + body
    elif broken == "garbage":
        body = draw(st.binary(max_size=500))
    return content_type, body, chosen if broken is None and all(part.well_formed for part in chosen) else None


def expected_filename(part: Part) -> str:
    if part.extended:
        return part.filename.decode("utf-8", "replace")
    _, options = parse_options_header(b'form-data; filename="' + part.filename.replace(b'"', b'\\"') + b'"')
    return options[b"filename"].decode("utf-8", "replace")


@FAST
@given(case=multipart_bodies())
def test_any_multipart_body(gateway, case):
    content_type, body, well_formed = case
    note(f"{content_type!r} {body[:2000]!r}")
    probe = {"X-API-Key": gateway.probe["api_key"], "content-type": content_type}
    response = gateway.client.post(gateway.probe["endpoint"] + "/files", headers=probe, content=body)
    answer = assert_sound(gateway, response)
    if well_formed is not None:
        files = [part for part in well_formed if part.filename is not None]
        assert answer.status == 200, answer
        seen = answer.json()
        assert [(f["field"], f["size"], f["sha256"]) for f in seen] == [
            (part.name.decode("utf-8", "replace"), len(part.data), hashlib.sha256(part.data).hexdigest())
            for part in files
        ]
        assert [f["filename"] for f in seen] == [expected_filename(part) for part in files]
    else:
        assert answer.status in (200, 422), answer
    hello = {"X-API-Key": gateway.hello["api_key"], "content-type": content_type}
    assert_sound(gateway, gateway.client.post(gateway.hello["endpoint"] + "/upload", headers=hello, content=body))
    assert not Path("/tmp", ESCAPE_MARKER).exists() and not Path("/", ESCAPE_MARKER).exists()
    assert_no_scratch_left(gateway)


# -- bodies over the cap ----------------------------------------------------------------------


OVER_THE_CAP_TARGETS = [
    ("hello", "/sum", "application/json"),
    ("hello", "/upload", "multipart/form-data; boundary=b"),
    ("probe", "/echo", "application/octet-stream"),
    ("probe", "/mirror", "application/x-www-form-urlencoded"),
]


@settings(FAST, max_examples=25)
@given(
    size=st.integers(BODY_LIMIT + 1, 3 * BODY_LIMIT),
    chunked=st.booleans(),
    target=st.sampled_from(OVER_THE_CAP_TARGETS),
)
def test_a_body_over_the_cap_is_413_before_the_guest_runs(gateway, size, chunked, target):
    api, path, content_type = getattr(gateway, target[0]), target[1], target[2]
    payload = b"7" * size
    if content_type.startswith("multipart"):  # well-formed as far as it goes: only its size is wrong
        payload = b'--b\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\n' + payload

    def stream():
        for start in range(0, len(payload), 1 << 16):
            yield payload[start : start + (1 << 16)]

    headers = {"X-API-Key": api["api_key"], "content-type": content_type}
    response = gateway.client.post(api["endpoint"] + path, headers=headers, content=stream() if chunked else payload)
    answer = assert_sound(gateway, response)
    assert (answer.status, answer.json()["error"]["code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert answer.json()["error"]["details"] == {"limit_bytes": BODY_LIMIT} and "x-wasmgate-fuel" not in answer.headers
    assert_no_scratch_left(gateway)


def test_a_declared_length_over_the_cap_is_refused_without_reading(gateway):
    target = f"{gateway.probe['endpoint']}/echo".encode()
    for length in (BODY_LIMIT + 1, 10**12, 10**19):  # h11 refuses a Content-Length of more than 20 digits
        request = request_head(b"POST", target, [key_header(gateway.probe), (b"Content-Length", b"%d" % length)])
        answer = assert_sound(gateway, send_raw(gateway, request, "POST"))
        assert (answer.status, answer.json()["error"]["code"]) == (413, "PAYLOAD_TOO_LARGE")


# -- callers that stop half-way, and what is not HTTP -----------------------------------------


def _logged(gw, api: dict, request_id: str) -> list[dict]:
    logs = gw.client.get(f"/v1/apis/{api['id']}/logs?limit=50", headers=ADMIN).json()["logs"]
    return [entry for entry in logs if entry["request_id"] == request_id]


HALF_A_FILE = b'--b\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\nabc'


@pytest.mark.parametrize("api, path, content_type, sent", [
    ("probe", "/echo", b"application/octet-stream", b"0123456789"),
    ("hello", "/upload", b"multipart/form-data; boundary=b", HALF_A_FILE),
])
def test_a_caller_who_hangs_up_mid_body_is_logged_not_a_gateway_failure(gateway, api, path, content_type, sent):
    api = getattr(gateway, api)
    request_id = "hangup-" + secrets.token_hex(6)
    headers = [key_header(api), (b"X-Request-Id", request_id.encode()), (b"Content-Type", content_type)]
    headers.append((b"Content-Length", b"100000"))  # and then far fewer bytes, and the connection closes
    head = request_head(b"POST", (api["endpoint"] + path).encode(), headers)
    with socket.create_connection(("127.0.0.1", gateway.server.port), timeout=TIMEOUT) as sock:
        sock.sendall(head + sent)
    # The call is logged once the gateway has noticed the hang-up: poll its log until then.
    deadline = time.monotonic() + 10
    while not (entries := _logged(gateway, api, request_id)):
        assert time.monotonic() < deadline, "the call that hung up was never logged"
        time.sleep(0.05)
    assert [(entry["status"], entry["outcome"]) for entry in entries] == [(499, "CLIENT_DISCONNECTED")]
    assert_no_scratch_left(gateway)
    assert f"request id {request_id})" not in gateway.server.log_path.read_text(errors="replace")  # no traceback


@pytest.mark.parametrize("bad", [
    b"X-Nul: a\x00b", b"Bad Name: v", b": empty", b"X-Cr: a\rb", b"Content-Length: abc", b"Content-Length: -1",
    b"Content-Length: 5\r\nContent-Length: 6", b"Content-Length: 100000000000000000000", b"Transfer-Encoding: gzip",
])
def test_what_is_not_http_is_refused_with_400_and_the_gateway_keeps_serving(gateway, bad):
    head = request_head(b"GET", f"{gateway.hello['endpoint']}/hello/x".encode(), [key_header(gateway.hello), bad])
    received = bytearray()
    with socket.create_connection(("127.0.0.1", gateway.server.port), timeout=TIMEOUT) as sock:
        sock.sendall(head)
        while chunk := sock.recv(1 << 16):
            received += chunk
    assert received.startswith(b"HTTP/1.1 400 "), bytes(received)
    key = {"X-API-Key": gateway.hello["api_key"]}
    assert gateway.client.get(gateway.hello["endpoint"] + "/hello/you", headers=key).json() == {"message": "hello you"}


@pytest.mark.parametrize("case", ["head-over-16-kib", "nul-in-a-header"])
def test_protocol_errors_have_the_json_error_shape(gateway, case):
    headers = [key_header(gateway.hello)]
    if case == "nul-in-a-header":
        headers.append(b"X-Nul: a\x00b")
    head = request_head(b"GET", f"{gateway.hello['endpoint']}/hello/x".encode(), headers)[:-2]
    if case == "head-over-16-kib":  # a head that has not ended after 20 KB: h11 gives up on it
        head += b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 200) for i in range(100))
    else:
        head += b"\r\n"
    received = bytearray()
    with socket.create_connection(("127.0.0.1", gateway.server.port), timeout=TIMEOUT) as sock:
        sock.sendall(head)
        while chunk := sock.recv(1 << 16):
            received += chunk
    answer = parse_answer(bytes(received), "GET")
    assert answer.status in (400, 431) and answer.headers["content-type"].startswith("application/json")
    assert set(answer.json()["error"]) == {"code", "message", "details"}


# -- schemathesis, against the document the gateway serves -------------------------------------


@pytest.fixture(scope="module")
def hello_schema(gateway):
    # The document's server is relative (/run/{id}): schemathesis resolves it against this URL.
    url = f"{gateway.server.url}{gateway.hello['endpoint']}/openapi.json"
    return schemathesis.openapi.from_url(url, timeout=TIMEOUT)


def gateway_not_a_server_error(ctx, response, case):
    """schemathesis' not_a_server_error, less what the README documents: a `SANDBOX_*` error
    that came from the guest (the example's handlers fail on some valid inputs: a `times`
    that builds a string past the memory limit, a JSON object without `values`)."""
    headers = {k.lower(): v for k, v in response.headers.items()}
    if response.status_code >= 500 and "x-wasmgate-fuel" in headers:
        code = json.loads(response.content)["error"]["code"]
        assert code in SANDBOX_STATUS and SANDBOX_STATUS[code] == response.status_code, response.content
        return True
    return not_a_server_error(ctx, response, case)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_example_api_conforms_to_its_openapi_document(gateway, hello_schema, mode):
    # The schema's own strategy with @given (schemathesis' lazy `from_fixture` loader reads
    # pytest's private `Function._nodeid`, which pytest 9.2 no longer has).
    headers = {"X-API-Key": gateway.hello["api_key"]}
    checks = [
        gateway_not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        ignored_auth,
    ]

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=hello_schema.as_strategy(mode))
    def conforms(case):
        response = case.call(headers=headers, timeout=TIMEOUT)
        # Invalid data must be refused, except in form fields: on the wire every field is a
        # string, so a "number" where the document says string is a valid string there.
        negative = mode is GenerationMode.NEGATIVE and case.media_type != "multipart/form-data"
        case.validate_response(response, checks=checks + [negative_data_rejection] * negative, headers=headers)
        assert_sound(gateway, response)

    conforms()
