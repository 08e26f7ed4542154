"""The gateway in process (Starlette TestClient): control plane, data plane, every error code.

One app for the module, with small caps so the limits are cheap to hit: one worker thread
(so a slow call fills the pool), 1 MB bodies and responses, 64 KB spooling threshold.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import sys
import threading
import time
import zipfile
from pathlib import Path

import jsonschema
import pytest
from openapi_spec_validator import validate
from starlette.testclient import TestClient

from gateway.http.app import create_app
from gateway.settings import Settings
from gateway_support import (  # noqa: F401
    ADMIN,
    ADMIN_TOKEN,
    HELLO,
    data_dir_sharing_store,
    deploy_request,
    gateway_sources,
    parse_metrics,
)

PROBE_LIMITS = {"memory_mb": 64, "fuel": 300_000_000, "timeout_ms": 1000}


def settings_for(data_dir: Path, **overrides) -> Settings:
    values = dict(
        data_dir=data_dir,
        admin_token=ADMIN_TOKEN,
        workers=1,
        queue_timeout_s=0.3,
        max_body_mb=1,
        max_response_mb=1,
        spool_kb=64,
        max_memory_mb=256,
    )
    values.update(overrides)
    return Settings(**values)


class Gateway:
    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.apis: dict[str, dict] = {}

    def deploy(self, name: str, source: tuple[str, str], **fields) -> dict:
        response = self.client.post("/v1/apis", headers=ADMIN, **deploy_request(name, source, **fields))
        assert response.status_code == 201, response.text
        self.apis[name] = response.json()
        return self.apis[name]

    def call(self, name: str, method: str, path: str, key: str | None = None, **kwargs):
        api = self.apis[name]
        headers = {"X-API-Key": key or api["api_key"], **kwargs.pop("headers", {})}
        return self.client.request(method, api["endpoint"] + path, headers=headers, **kwargs)


@pytest.fixture(scope="module")
def gw_data_dir(tmp_path_factory, bundle_store) -> Path:
    return data_dir_sharing_store(tmp_path_factory.mktemp("gateway") / "data", bundle_store)


@pytest.fixture(scope="module")
def gw(gateway_sources, gw_data_dir) -> Gateway:
    with TestClient(create_app(settings_for(gw_data_dir))) as client:
        gateway = Gateway(client)
        gateway.deploy("hello", gateway_sources["hello"])
        gateway.deploy("probe", gateway_sources["probe"], limits=PROBE_LIMITS)
        gateway.deploy("inspect", gateway_sources["hello_v2"])
        yield gateway


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"]
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code, body
    return body["error"]


# -- basics -----------------------------------------------------------------------------------


def test_health_and_readiness_need_no_auth(gw):
    assert gw.client.get("/healthz").json() == {"status": "ok"}
    ready = gw.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def metrics(gw) -> dict[str, float]:
    return parse_metrics(gw.client.get("/metrics").text)


def test_metrics_count_the_instance_pool_and_the_call_log(gw):
    before = metrics(gw)
    for _ in range(5):
        assert gw.call("hello", "GET", "/hello/x").status_code == 200
    gw.client.get(f"/v1/apis/{gw.apis['hello']['id']}/logs", headers=ADMIN)  # flushes the call log
    after = metrics(gw)
    served = sum(after[f"wasmgate_instance_pool_{k}_total"] - before[f"wasmgate_instance_pool_{k}_total"]
                 for k in ("hits", "misses"))
    assert served == 5
    assert after["wasmgate_call_log_written_total"] - before["wasmgate_call_log_written_total"] >= 5
    assert after["wasmgate_call_log_dropped_total"] == 0
    assert 0 <= after["wasmgate_instance_pool_live"] <= after["wasmgate_instance_pool_slots"]


def test_every_response_has_a_request_id_and_a_sane_incoming_one_is_kept(gw):
    assert len(gw.client.get("/healthz").headers["x-request-id"]) >= 16
    assert gw.client.get("/healthz", headers={"X-Request-Id": "trace-42"}).headers["x-request-id"] == "trace-42"
    assert gw.client.get("/healthz", headers={"X-Request-Id": "bad id\x7f"}).headers["x-request-id"] != "bad id"
    assert gw.client.get("/nowhere").headers["x-request-id"]
    echoed = gw.call("inspect", "GET", "/inspect/x", headers={"X-Request-Id": "trace-43"})
    assert echoed.headers["x-request-id"] == "trace-43"
    assert ["x-request-id", "trace-43"] in echoed.json()["headers"]


def test_the_guest_sees_the_callers_address_and_a_caller_cannot_forge_it(gw):
    echoed = gw.call("inspect", "GET", "/inspect/x").json()
    assert echoed["client"] == ["testclient", 50000]  # what the gateway saw (Starlette's TestClient)
    forged = gw.call("inspect", "GET", "/inspect/x", headers={"X-Wasmgate-Context": '{"client": ["203.0.113.9", 1]}', "X-Wasmgate-Other": "x"}).json()
    assert forged["client"] == ["testclient", 50000]
    assert not [name for name, _ in echoed["headers"] + forged["headers"] if name.startswith("x-wasmgate")]


def test_unknown_endpoint_and_wrong_method(gw):
    assert_error(gw.client.get("/nowhere"), 404, "NOT_FOUND")
    assert_error(gw.client.delete("/healthz"), 405, "METHOD_NOT_ALLOWED")
    assert_error(gw.client.patch("/v1/apis", headers=ADMIN), 405, "METHOD_NOT_ALLOWED")


def test_control_plane_needs_the_admin_token(gw):
    error = assert_error(gw.client.get("/v1/apis"), 401, "AUTH_MISSING")
    assert "Bearer" in error["message"]
    assert_error(gw.client.get("/v1/apis", headers={"Authorization": "Bearer nope"}), 403, "AUTH_INVALID")
    key = gw.apis["hello"]["api_key"]
    assert_error(gw.client.get("/v1/apis", headers={"Authorization": f"Bearer {key}"}), 403, "AUTH_INVALID")


# -- deploying --------------------------------------------------------------------------------


def test_create_answers_id_endpoint_and_a_key_once(gw):
    created = gw.apis["hello"]
    assert created["name"] == "hello" and created["version"] == 1 and created["status"] == "active"
    assert created["endpoint"] == f"/run/{created['id']}"
    assert created["api_key"].startswith("wg_")
    listed = gw.client.get("/v1/apis", headers=ADMIN).json()["apis"]
    assert {"hello", "probe", "inspect"} <= {api["name"] for api in listed}
    assert all("api_key" not in api for api in listed)
    detail = gw.client.get(f"/v1/apis/{created['id']}", headers=ADMIN).json()
    assert detail["active_version"] == 1 and [v["version"] for v in detail["versions"]] == [1]
    assert detail["limits"]["memory_mb"] == 128
    assert {(r["method"], r["path"]) for r in detail["routes"]} >= {("GET", "/hello/{name}"), ("POST", "/upload")}
    assert gw.client.get("/v1/apis/hello", headers=ADMIN).json()["id"] == created["id"]  # by name too
    probe = gw.client.get("/v1/apis/probe", headers=ADMIN).json()
    assert {k: probe["limits"][k] for k in PROBE_LIMITS} == PROBE_LIMITS


def test_a_name_is_unique(gw):
    response = gw.client.post("/v1/apis", headers=ADMIN, json={"name": "hello", "source": HELLO})
    assert_error(response, 409, "CONFLICT")


@pytest.mark.parametrize(
    "body, where",
    [
        (b"{not json", ""),
        (b"[1, 2]", ""),
        (b'{"name": "x"}', "source"),
        (b'{"name": "x", "source": 5}', "source"),
        (b'{"source": "app = 1"}', "name"),
        (b'{"name": "bad name!", "source": "x"}', "name"),
        (b'{"name": "x", "source": "x", "colour": "blue"}', "colour"),
        (b'{"name": "x", "source": "x", "limits": {"memory_mb": "lots"}}', "limits.memory_mb"),
        (b'{"name": "x", "source": "x", "rate_limit": {"requests": 0, "per_seconds": 1}}', "rate_limit.requests"),
        # Numbers past what any column or float holds are the caller's error, never a 500.
        (b'{"name": "x", "source": "x", "rate_limit": {"requests": 1e400, "per_seconds": 1}}', ""),
        (b'{"name": "x", "source": "x", "rate_limit": {"requests": 10000000000, "per_seconds": 1}}',
         "rate_limit.requests"),
        (b'{"name": "x", "source": "x", "rate_limit": {"requests": 1, "per_seconds": 1e308}}', "rate_limit.per_seconds"),
        (b'{"name": "x", "source": "x", "limits": {"fuel": 9223372036854775808}}', "limits.fuel"),
        (b'{"name": "x", "source": "x", "quota": {"fuel_per_day": 9223372036854775808}}', "quota.fuel_per_day"),
    ],
)
def test_bad_deploy_requests_are_validation_errors(gw, body, where):
    response = gw.client.post("/v1/apis", headers={**ADMIN, "content-type": "application/json"}, content=body)
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert error["message"].startswith(where)


def test_limits_above_the_server_caps_are_refused_clearly(gw):
    response = gw.client.post(
        "/v1/apis", headers=ADMIN, json={"name": "greedy", "source": HELLO, "limits": {"memory_mb": 4096}}
    )
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert "WASMGATE_MAX_MEMORY_MB" in error["message"] and "256" in error["message"]
    response = gw.client.put(
        f"/v1/apis/{gw.apis['hello']['id']}", headers=ADMIN, json={"source": HELLO, "limits": {"timeout_ms": 10**9}}
    )
    assert "WASMGATE_MAX_TIMEOUT_MS" in assert_error(response, 422, "VALIDATION_ERROR")["message"]


def test_a_build_failure_is_422_build_failed_with_the_log(gw, gw_data_dir):
    response = gw.client.post(
        "/v1/apis",
        headers=ADMIN,
        data={"name": "broken"},
        files={"source": ("app.zip", b"this is not a zip archive", "application/zip")},
    )
    error = assert_error(response, 422, "BUILD_FAILED")
    assert "zip" in error["message"] and "reading source" in error["details"]["log"]
    response = gw.client.post(
        "/v1/apis", headers=ADMIN, data={"name": "broken"}, files={"source": ("app.txt", b"x", "text/plain")}
    )
    error = assert_error(response, 422, "BUILD_FAILED")
    assert "app.txt must be a .py file" in error["message"]
    assert str(gw_data_dir) not in response.text  # no host paths for the caller
    assert gw.client.get("/v1/apis/broken", headers=ADMIN).status_code == 404
    response = gw.client.post("/v1/apis", headers=ADMIN, json={"name": "no-app", "source": "x = 1\n"})
    error = assert_error(response, 422, "BUILD_FAILED")
    assert "must define `app = wasmgate.App()`" in error["message"]
    for host_detail in ("backtrace", "0x", ".rs", "wasmtime", str(gw_data_dir), sys.prefix):
        assert host_detail not in response.text


def test_multipart_deploy_of_a_zip_package_with_progress_stream(gw):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("hello.py", HELLO)
    response = gw.client.post(
        "/v1/apis",
        headers={**ADMIN, "Accept": "application/x-ndjson"},
        data={"name": "zipped", "rate_limit": '{"requests": 2, "per_seconds": 60}'},
        files={"source": ("pkg.zip", archive.getvalue(), "application/zip"), "requirements": ("r.txt", b"\n")},
    )
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-ndjson"
    events = [json.loads(line) for line in response.iter_lines() if line]
    assert any("log" in event for event in events[:-1])
    final = events[-1]
    assert final["status"] == 201, final
    gw.apis["zipped"] = final["body"]
    assert gw.call("zipped", "GET", "/hello/zip").json() == {"message": "hello zip"}


# -- the data plane -----------------------------------------------------------------------------


def test_json_path_and_query(gw):
    response = gw.call("hello", "GET", "/hello/ada", params={"times": 2})
    assert response.status_code == 200
    assert response.json() == {"message": "hello ada hello ada"}
    assert int(response.headers["x-wasmgate-fuel"]) > 0
    assert float(response.headers["x-wasmgate-duration-ms"]) > 0
    assert gw.call("hello", "POST", "/sum", json={"values": [1, 2, 3.5]}).json() == {"sum": 6.5}


def test_the_key_also_works_as_a_bearer_token(gw):
    api = gw.apis["hello"]
    response = gw.client.get(api["endpoint"] + "/hello/b", headers={"Authorization": f"Bearer {api['api_key']}"})
    assert response.status_code == 200


def test_data_plane_auth_errors(gw):
    endpoint = gw.apis["hello"]["endpoint"]
    assert_error(gw.client.get(endpoint + "/hello/x"), 401, "AUTH_MISSING")
    assert_error(gw.client.get(endpoint + "/hello/x", headers={"X-API-Key": "wg_nope_nope"}), 403, "AUTH_INVALID")
    assert_error(gw.client.get(endpoint + "/hello/x", headers={"X-API-Key": "garbage"}), 403, "AUTH_INVALID")
    other = gw.apis["probe"]["api_key"]
    assert_error(gw.client.get(endpoint + "/hello/x", headers={"X-API-Key": other}), 403, "AUTH_INVALID")
    assert_error(gw.client.get("/run/000000000000/hello/x", headers={"X-API-Key": other}), 404, "NOT_FOUND")


def test_the_guest_s_own_statuses_pass_through(gw):
    missing = gw.call("hello", "GET", "/missing")
    assert missing.status_code == 404 and missing.json()["error"]["message"] == "no such thing"
    assert gw.call("hello", "GET", "/no/such/route").status_code == 404
    wrong = gw.call("hello", "DELETE", "/png")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    invalid = gw.call("hello", "GET", "/hello/x", params={"times": "many"})
    assert invalid.status_code == 422 and invalid.json()["error"]["code"] == "VALIDATION_ERROR"


def test_request_parts_reach_the_guest(gw):
    response = gw.call(
        "inspect",
        "PATCH",
        "/inspect/a%20b/c%2Fd",
        params=[("q", "1"), ("q", "2"), ("empty", "")],
        headers={"X-Custom": "yes", "Content-Type": "application/json"},
        content=b'{"k": 1}',
    )
    seen = response.json()
    assert seen["method"] == "PATCH"
    assert seen["path"] == "/inspect/a b/c/d" and seen["rest"] == "a b/c/d"
    assert seen["query"] == [["q", "1"], ["q", "2"], ["empty", ""]]
    names = {name for name, _ in seen["headers"]}
    assert "x-custom" in names and "x-api-key" not in names and "authorization" not in names
    assert seen["body_sha256"] == hashlib.sha256(b'{"k": 1}').hexdigest()


def test_form_urlencoded_arrives_as_form_and_raw_body(gw):
    response = gw.call("inspect", "POST", "/inspect/form", data={"a": "1", "b": "x y"})
    seen = response.json()
    assert seen["form"] == [["a", "1"], ["b", "x y"]]
    assert seen["body_size"] == len(b"a=1&b=x+y")


def test_multipart_files_and_fields_arrive_byte_exact(gw):
    first, second = os.urandom(300_000), bytes(range(256)) * 100
    response = gw.call(
        "inspect",
        "POST",
        "/digest",
        data={"label": "naïve ☃", "empty": ""},
        files=[("doc", ("report.bin", first, "application/x-thing")), ("doc", ("b.txt", second, "text/plain"))],
    )
    assert response.status_code == 200, response.text
    seen = response.json()
    assert seen["form"] == [["label", "naïve ☃"], ["empty", ""]]
    assert seen["files"] == [
        {"field": "doc", "filename": "report.bin", "content_type": "application/x-thing", "size": len(first),
         "sha256": hashlib.sha256(first).hexdigest()},
        {"field": "doc", "filename": "b.txt", "content_type": "text/plain", "size": len(second),
         "sha256": hashlib.sha256(second).hexdigest()},
    ]
    upload = gw.call("hello", "POST", "/upload", data={"label": "l"}, files={"file": ("f.bin", first)})
    assert upload.json() == {
        "filename": "f.bin", "size": len(first), "label": "l", "content_type": "application/octet-stream"
    }


def test_unusual_and_malformed_multipart(gw):
    body = (
        b"--b\r\nContent-Disposition: form-data; name=\"f\"; filename*=UTF-8''na%C3%AFve.txt\r\n\r\nhi\r\n"
        b"--b--\r\n"
    )
    headers = {"content-type": "multipart/form-data; boundary=b"}
    response = gw.call("inspect", "POST", "/digest", content=body, headers=headers)
    assert response.json()["files"][0]["filename"] == "naïve.txt"
    for content_type, body in [
        ("multipart/form-data", b"--b\r\n"),
        ("multipart/form-data; boundary=b", b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--\r\n"),
        ("multipart/form-data; boundary=b", b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nunfinished"),
    ]:
        response = gw.call("inspect", "POST", "/digest", content=body, headers={"content-type": content_type})
        assert_error(response, 422, "VALIDATION_ERROR")


def test_raw_binary_bodies_and_responses_are_byte_exact(gw):
    for size in (0, 1000, 700_000):  # 700 KB is above the spooling threshold: sent from a file
        payload = os.urandom(size)
        response = gw.call("probe", "POST", "/echo", content=payload, headers={"content-type": "application/x-raw"})
        assert response.status_code == 200
        assert response.content == payload
        assert response.headers["content-type"] == "application/x-raw"
    png = gw.call("hello", "GET", "/png")
    assert png.headers["content-type"] == "image/png"
    assert png.content == b"\x89PNG\r\n\x1a\n" + bytes(range(256))


def test_request_scratch_files_are_removed(gw, gw_data_dir):
    data_dir = gw_data_dir
    gw.call("hello", "POST", "/upload", data={"label": "l"}, files={"file": ("f.bin", b"x" * 1000)})
    gw.call("probe", "POST", "/echo", content=os.urandom(200_000))
    deadline = time.monotonic() + 30  # removed right after each answer has been sent
    while list((data_dir / "requests").iterdir()):
        assert time.monotonic() < deadline, "scratch files left behind"
        time.sleep(0.01)
    assert list((data_dir / "sources").iterdir()) == []


# -- errors from the sandbox and from limits ----------------------------------------------------


def test_a_guest_exception_is_500_without_traceback_and_logged(gw):
    response = gw.call("probe", "GET", "/raise")
    error = assert_error(response, 500, "SANDBOX_ERROR")
    assert "secret internals" not in response.text and "Traceback" not in response.text
    assert error["message"] == "the API raised an exception"
    assert "x-wasmgate-fuel" in response.headers
    logs = gw.client.get("/v1/apis/probe/logs?limit=1", headers=ADMIN).json()["logs"]
    assert logs[0]["outcome"] == "SANDBOX_ERROR" and logs[0]["status"] == 500
    assert "secret internals" in logs[0]["error"]
    assert logs[0]["request_id"] == response.headers["x-request-id"]


@pytest.mark.parametrize(
    "path, params, status, code",
    [
        ("/loop", {}, 504, "SANDBOX_FUEL_EXHAUSTED"),
        ("/sleep", {"seconds": 30}, 504, "SANDBOX_TIMEOUT"),
        ("/alloc", {"mb": 200}, 500, "SANDBOX_MEMORY_LIMIT"),
        ("/big", {"mb": 2}, 500, "SANDBOX_OUTPUT_TOO_LARGE"),
    ],
)
def test_sandbox_limits_map_to_their_codes(gw, path, params, status, code):
    started = time.monotonic()
    response = gw.call("probe", "GET", path, params=params)
    assert_error(response, status, code)
    assert time.monotonic() - started < 10
    assert "x-wasmgate-duration-ms" in response.headers
    assert gw.call("probe", "GET", "/state").status_code == 200  # the gateway still serves


def test_a_body_over_the_cap_is_413(gw):
    big = b"x" * (1 << 20 | 1)
    assert_error(gw.call("probe", "POST", "/echo", content=big), 413, "PAYLOAD_TOO_LARGE")
    response = gw.call("hello", "POST", "/upload", data={"label": "l"}, files={"file": ("f", big)})
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")

    def chunks():  # no Content-Length: counted while streaming
        for _ in range(20):
            yield b"y" * 65536

    assert_error(gw.call("probe", "POST", "/echo", content=chunks()), 413, "PAYLOAD_TOO_LARGE")
    source = "x = 1\n" * (2 << 20)
    response = gw.client.post("/v1/apis", headers=ADMIN, json={"name": "huge", "source": source * 2})
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


def test_rate_limit_per_key_with_retry_after(gw):
    key, other = (gw.client.post("/v1/apis/zipped/keys", headers=ADMIN).json()["api_key"] for _ in range(2))
    first, second = gw.call("zipped", "GET", "/hello/a", key=key), gw.call("zipped", "GET", "/hello/a", key=key)
    assert first.status_code == second.status_code == 200
    assert first.headers["ratelimit-limit"] == "2" and first.headers["ratelimit-remaining"] == "1"
    limited = gw.call("zipped", "GET", "/hello/a", key=key)
    assert_error(limited, 429, "RATE_LIMITED")
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.headers["ratelimit-remaining"] == "0"
    assert gw.call("zipped", "GET", "/hello/a", key=other).status_code == 200  # each key has its own budget


def test_a_full_pool_sheds_load_with_503_and_retry_after(gw):
    slow: dict = {}
    thread = threading.Thread(target=lambda: slow.update(r=gw.call("probe", "GET", "/sleep", params={"seconds": 0.8})))
    thread.start()
    deadline = time.monotonic() + 10
    while gw.client.get("/readyz").json()["running"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    shed = gw.call("hello", "GET", "/hello/x")
    assert time.monotonic() - started < 2
    thread.join()
    assert_error(shed, 503, "OVERLOADED")
    assert shed.headers["retry-after"] == "1"
    assert slow["r"].status_code == 200
    assert gw.call("hello", "GET", "/hello/x").status_code == 200


# -- docs ---------------------------------------------------------------------------------------


def test_openapi_from_the_route_table(gw):
    api = gw.apis["hello"]
    doc = gw.client.get(api["endpoint"] + "/openapi.json").json()  # no key needed
    assert doc["openapi"].startswith("3.1")
    assert doc["servers"] == [{"url": api["endpoint"]}]
    hello = doc["paths"]["/hello/{name}"]["get"]
    assert {(p["name"], p["in"], p["schema"]["type"]) for p in hello["parameters"]} == {
        ("name", "path", "string"),
        ("times", "query", "integer"),
    }
    upload = doc["paths"]["/upload"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert upload["properties"]["file"]["format"] == "binary" and set(upload["required"]) == {"file", "label"}
    assert "application/json" in doc["paths"]["/sum"]["post"]["requestBody"]["content"]
    inspect = gw.client.get(gw.apis["inspect"]["endpoint"] + "/openapi.json").json()
    assert "/inspect/{rest}" in inspect["paths"]
    for name in ("hello", "inspect", "probe"):  # every served document is valid OpenAPI
        validate(gw.client.get(gw.apis[name]["endpoint"] + "/openapi.json").json())
    page = gw.client.get(api["endpoint"] + "/docs")
    assert page.status_code == 200 and "swagger-ui" in page.text and f"{api['endpoint']}/openapi.json" in page.text


def test_the_control_plane_answers_what_its_document_says(gw):
    document = gw.client.get("/openapi.json").json()

    def check(response, status: int, schema: str) -> None:
        assert response.status_code == status, response.text
        root = {"$ref": f"#/components/schemas/{schema}", "components": document["components"]}
        jsonschema.Draft202012Validator(root).validate(response.json())

    api = f"/v1/apis/{gw.apis['hello']['id']}"
    created = gw.client.post(api + "/keys", headers=ADMIN)
    check(created, 201, "KeyCreated")
    check(gw.client.get("/v1/apis", headers=ADMIN), 200, "ApiList")
    check(gw.client.get(api, headers=ADMIN), 200, "ApiDescription")
    check(gw.client.get(api + "/keys", headers=ADMIN), 200, "KeyList")
    gw.call("hello", "GET", "/hello/doc")
    check(gw.client.get(api + "/usage", headers=ADMIN), 200, "Usage")
    check(gw.client.get("/v1/apis/nope", headers=ADMIN), 404, "Error")
    check(gw.client.get("/v1/apis"), 401, "Error")
    check(gw.client.post(api + "/rollback", headers=ADMIN, json={"version": 0}), 422, "Error")
    assert gw.client.delete(f"{api}/keys/{created.json()['id']}", headers=ADMIN).status_code == 204
    for name in ("hello", "inspect"):  # the answers of the creates
        root = {"$ref": "#/components/schemas/ApiCreated", "components": document["components"]}
        jsonschema.Draft202012Validator(root).validate(gw.apis[name])


def test_a_private_api_document_needs_a_key_its_page_asks_for_it(gw, gateway_sources):
    private = gw.deploy("private", gateway_sources["hello"], private=True)
    reserved = f"/_wasmgate/apis/{private['id']}"
    for document in (private["endpoint"] + "/openapi.json", reserved + "/openapi.json"):
        assert_error(gw.client.get(document), 401, "AUTH_MISSING")
        assert gw.client.get(document, headers={"X-API-Key": private["api_key"]}).status_code == 200
    for page in (private["endpoint"] + "/docs", reserved + "/docs"):  # the page holds no secret
        response = gw.client.get(page)
        assert response.status_code == 200 and 'id="wasmgate-key"' in response.text
    public_page = gw.client.get(gw.apis["hello"]["endpoint"] + "/docs").text
    assert 'id="wasmgate-key"' not in public_page


# -- keys, logs, usage ----------------------------------------------------------------------------


def test_keys_are_listed_without_secrets_and_revoked_at_once(gw):
    api = gw.apis["hello"]
    created = gw.client.post(f"/v1/apis/{api['id']}/keys", headers=ADMIN)
    assert created.status_code == 201
    key = created.json()
    assert gw.call("hello", "GET", "/hello/k", key=key["api_key"]).status_code == 200
    listed = gw.client.get(f"/v1/apis/{api['id']}/keys", headers=ADMIN).json()["keys"]
    assert {k["id"] for k in listed} == {api["key_id"], key["id"]}
    assert all(set(k) == {"id", "prefix", "created_at"} for k in listed)
    assert key["api_key"].startswith(key["prefix"] + "_")
    assert gw.client.delete(f"/v1/apis/{api['id']}/keys/{key['id']}", headers=ADMIN).status_code == 204
    assert_error(gw.call("hello", "GET", "/hello/k", key=key["api_key"]), 403, "AUTH_INVALID")
    assert_error(gw.client.delete(f"/v1/apis/{api['id']}/keys/{key['id']}", headers=ADMIN), 404, "NOT_FOUND")


def test_keys_are_stored_hashed(gw, gw_data_dir):
    data_dir = gw_data_dir
    import sqlite3

    key = gw.apis["hello"]["api_key"]
    with sqlite3.connect(data_dir / "wasmgate.db") as conn:
        digests = [row[0] for row in conn.execute("SELECT digest FROM api_keys")]
    assert hashlib.sha256(key.encode()).hexdigest() in digests
    for file in data_dir.glob("wasmgate.db*"):  # the database and its write-ahead log
        assert key.encode() not in file.read_bytes()


def test_logs_show_latest_invocations_with_output(gw):
    request_id = gw.call("probe", "GET", "/print", params={"kb": 1}).headers["x-request-id"]
    logs = gw.client.get("/v1/apis/probe/logs", params={"limit": 2}, headers=ADMIN).json()["logs"]
    assert len(logs) == 2
    latest = logs[0]
    assert latest["request_id"] == request_id
    assert latest["route"] == "/print" and latest["path"] == "/print" and latest["method"] == "GET"
    assert latest["status"] == 200 and latest["outcome"] == "OK"
    assert latest["fuel_used"] > 0 and latest["duration_ms"] > 0 and latest["time"].endswith("Z")
    assert "y" * 100 in latest["stdout"] and "to stderr" in latest["stderr"]
    assert_error(gw.client.get("/v1/apis/probe/logs", params={"limit": 0}, headers=ADMIN), 422, "VALIDATION_ERROR")


def test_usage_per_hour_counts_errors_by_outcome(gw):
    usage = gw.client.get("/v1/apis/probe/usage", headers=ADMIN).json()
    totals = usage["totals"]
    assert totals["requests"] >= 5 and totals["fuel"] > 0 and totals["bytes_in"] > 0 and totals["bytes_out"] > 0
    assert totals["errors"]["SANDBOX_ERROR"] >= 1 and totals["errors"]["SANDBOX_TIMEOUT"] >= 1
    assert usage["hours"] and usage["hours"][-1]["hour"].endswith(":00:00.000Z")
    assert sum(hour["requests"] for hour in usage["hours"]) == totals["requests"]


# -- versions -----------------------------------------------------------------------------------


def test_update_and_rollback(gw, gateway_sources):
    api = gw.apis["zipped"]
    response = gw.client.put(f"/v1/apis/{api['id']}", headers=ADMIN, json={"source": gateway_sources["hello_v2"][1]})
    assert response.status_code == 200, response.text
    assert response.json()["active_version"] == 2
    assert response.json()["rate_limit"] == {"requests": 2, "per_seconds": 60}  # kept from version 1
    key = gw.client.post(f"/v1/apis/{api['id']}/keys", headers=ADMIN).json()["api_key"]
    assert gw.call("zipped", "GET", "/version", key=key).json() == {"version": 2}
    rolled = gw.client.post(f"/v1/apis/{api['id']}/rollback", headers=ADMIN, json={"version": 1})
    assert rolled.status_code == 200 and rolled.json()["active_version"] == 1
    assert [v["active"] for v in rolled.json()["versions"]] == [True, False]
    assert gw.call("zipped", "GET", "/version", key=key).status_code == 404
    missing = gw.client.post(f"/v1/apis/{api['id']}/rollback", headers=ADMIN, json={"version": 9})
    assert_error(missing, 404, "NOT_FOUND")
    assert_error(gw.client.post(f"/v1/apis/{api['id']}/rollback", headers=ADMIN, json={}), 422, "VALIDATION_ERROR")
    for version in (2**31, 2**63, -(2**63) - 1, 0):  # out of range: 422, not a database overflow
        too_big = gw.client.post(f"/v1/apis/{api['id']}/rollback", headers=ADMIN, json={"version": version})
        assert assert_error(too_big, 422, "VALIDATION_ERROR")["message"].startswith("version")
    assert_error(gw.client.put("/v1/apis/nope", headers=ADMIN, json={"source": HELLO}), 404, "NOT_FOUND")


def test_delete_makes_the_endpoint_404(gw, gateway_sources):
    doomed = gw.deploy("doomed", gateway_sources["hello"])
    assert gw.call("doomed", "GET", "/hello/x").status_code == 200
    assert gw.client.delete(f"/v1/apis/{doomed['id']}", headers=ADMIN).status_code == 204
    assert_error(gw.call("doomed", "GET", "/hello/x"), 404, "NOT_FOUND")
    assert_error(gw.client.get(f"/v1/apis/{doomed['id']}", headers=ADMIN), 404, "NOT_FOUND")
    assert_error(gw.client.get(f"/v1/apis/{doomed['id']}/keys", headers=ADMIN), 404, "NOT_FOUND")
    again = gw.deploy("doomed", gateway_sources["hello"])  # the name is free again
    assert_error(gw.call("doomed", "GET", "/hello/x", key=doomed["api_key"]), 403, "AUTH_INVALID")
    assert gw.call("doomed", "GET", "/hello/x", key=again["api_key"]).status_code == 200


# -- starting -----------------------------------------------------------------------------------


def test_a_new_process_on_the_same_data_dir_serves_everything(gw, gw_data_dir):
    with TestClient(create_app(settings_for(gw_data_dir))) as client:
        api = gw.apis["hello"]
        response = client.get(api["endpoint"] + "/hello/again", headers={"X-API-Key": api["api_key"]})
        assert response.json() == {"message": "hello again"}
        names = {a["name"] for a in client.get("/v1/apis", headers=ADMIN).json()["apis"]}
        assert names == {a["name"] for a in gw.client.get("/v1/apis", headers=ADMIN).json()["apis"]}
        assert client.get("/v1/apis/probe", headers=ADMIN).json()["limits"]["fuel"] == PROBE_LIMITS["fuel"]


def test_without_a_configured_token_one_is_generated_once_and_kept_hashed(tmp_path, capsys):
    data_dir = tmp_path / "fresh"
    settings = settings_for(data_dir, admin_token=None)
    with TestClient(create_app(settings)):
        pass
    printed = capsys.readouterr().out
    token = printed.split("WASMGATE_ADMIN_TOKEN=", 1)[1].split()[0]
    token_file = data_dir / "admin-token.sha256"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert token not in token_file.read_text()
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/apis", headers={"Authorization": f"Bearer {token}"}).json() == {"apis": []}
        assert_error(client.get("/v1/apis", headers=ADMIN), 403, "AUTH_INVALID")
    assert "WASMGATE_ADMIN_TOKEN=" not in capsys.readouterr().out


def test_serve_example_deploys_the_readme_api_and_prints_curl_commands(tmp_path, bundle_store, capsys):
    from gateway.http.example import deploy_example

    settings = settings_for(data_dir_sharing_store(tmp_path / "data", bundle_store))
    keys = []
    for attempt in range(2):  # the second start finds it deployed and prints a fresh key
        with TestClient(create_app(settings, after_start=deploy_example)) as client:
            printed, deadline = "", time.monotonic() + 120
            while "curl" not in printed and time.monotonic() < deadline:
                printed += capsys.readouterr().out
                time.sleep(0.1)
            keys.append(printed.split("export KEY=", 1)[1].split()[0])
            api = client.get("/v1/apis/hello", headers=ADMIN).json()
            assert f'curl -H "X-API-Key: $KEY" "http://127.0.0.1:8000{api["endpoint"]}/hello/world?times=2"' in printed
            assert f"Its docs: http://127.0.0.1:8000{api['endpoint']}/docs" in printed and "open " not in printed
            response = client.get(api["endpoint"] + "/hello/world", headers={"X-API-Key": keys[-1]})
            assert response.json() == {"message": "hello world"}
            assert api["version"] == 1
            # the key the previous start printed is revoked: restarts do not pile up live keys
            assert len(client.get(f"/v1/apis/{api['id']}/keys", headers=ADMIN).json()["keys"]) == 1
            if attempt:
                assert client.get(api["endpoint"] + "/hello/world", headers={"X-API-Key": keys[0]}).status_code == 403
