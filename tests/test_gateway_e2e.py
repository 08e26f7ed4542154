"""End to end over real HTTP: `wasmgate serve` as a subprocess (uvicorn on a free port).

The tests run in order and share one server: deploy -> JSON call -> 10 MB multipart upload
with form fields (byte-exact) -> binary response -> hot swap under a steady stream of
requests (zero failures) -> rollback -> revoke a key -> kill -9 and restart on the same data
dir -> call again; then curl as the README shows it, and the remote command line.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time

import httpx
import pytest

from gateway_support import (  # noqa: F401
    ADMIN,
    ADMIN_TOKEN,
    ROOT,
    ServerProcess,
    data_dir_sharing_store,
    deploy_request,
    gateway_sources,
    server_env,
)

state: dict = {}


@pytest.fixture(scope="module")
def server(gateway_sources, tmp_path_factory, bundle_store):
    root = tmp_path_factory.mktemp("e2e")
    data_dir = data_dir_sharing_store(root / "data", bundle_store)
    process = ServerProcess(data_dir, root / "server.log", WASMGATE_WORKERS="2")
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client


def call(client: httpx.Client, method: str, path: str, key: str | None = None, api: str = "hello", **kwargs):
    headers = {"X-API-Key": key or state[api]["api_key"], **kwargs.pop("headers", {})}
    return client.request(method, state[api]["endpoint"] + path, headers=headers, **kwargs)


def test_deploy(client, gateway_sources):
    for name, source in (("hello", "hello"), ("inspect", "hello_v2")):  # multipart .py, JSON
        response = client.post("/v1/apis", headers=ADMIN, **deploy_request(name, gateway_sources[source]))
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["status"] == "active" and body["version"] == 1 and body["endpoint"] == f"/run/{body['id']}"
        state[name] = body
    assert client.get("/healthz").status_code == 200


def test_call_with_json(client):
    response = call(client, "POST", "/sum", json={"values": [1, 2, 3]})
    assert response.status_code == 200 and response.json() == {"sum": 6}
    assert response.headers["x-request-id"] and int(response.headers["x-wasmgate-fuel"]) > 0
    assert "x-wasmgate-duration-ms" in response.headers
    assert call(client, "GET", "/hello/world", params={"times": 2}).json() == {"message": "hello world hello world"}


def test_10_mb_multipart_upload_with_form_fields_is_byte_exact(client):
    data = os.urandom(10 << 20)
    response = call(
        client,
        "POST",
        "/digest",
        api="inspect",
        data={"label": "ten megabytes", "note": "ünïcödé"},
        files={"file": ("big.bin", data, "application/octet-stream")},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "form": [["label", "ten megabytes"], ["note", "ünïcödé"]],
        "files": [
            {"field": "file", "filename": "big.bin", "content_type": "application/octet-stream",
             "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        ],
    }
    upload = call(client, "POST", "/upload", data={"label": "big"}, files={"file": ("big.bin", data)})
    assert upload.json() == {
        "filename": "big.bin", "size": 10 << 20, "label": "big", "content_type": "application/octet-stream"
    }


def test_binary_response(client):
    response = call(client, "GET", "/png")
    assert response.headers["content-type"] == "image/png"
    assert response.content == b"\x89PNG\r\n\x1a\n" + bytes(range(256))


def test_hot_swap_under_a_steady_stream_of_requests_has_zero_failures(client, server, gateway_sources):
    stop = threading.Event()
    results: list[tuple[int, str]] = []

    def stream() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as own:
            while not stop.is_set():
                try:
                    response = call(own, "GET", "/hello/swap")
                    results.append((response.status_code, response.text))
                except httpx.HTTPError as error:
                    results.append((0, repr(error)))
                time.sleep(0.005)

    streams = [threading.Thread(target=stream) for _ in range(3)]
    for thread in streams:
        thread.start()
    try:
        time.sleep(1.0)
        before = len(results)
        response = client.put(
            f"/v1/apis/{state['hello']['id']}", headers=ADMIN, json={"source": gateway_sources["hello_v2"][1]}
        )
        assert response.status_code == 200, response.text
        assert response.json()["active_version"] == 2
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in streams:
            thread.join()
    failures = [r for r in results if r != (200, '{"message":"hello swap"}')]
    assert not failures, failures[:5]
    assert before > 10 and len(results) - before > 10
    assert call(client, "GET", "/version").json() == {"version": 2}
    logs = client.get(f"/v1/apis/{state['hello']['id']}/logs", params={"limit": 1000}, headers=ADMIN).json()["logs"]
    assert {entry["version"] for entry in logs if entry["path"] == "/hello/swap"} == {1, 2}


def test_rollback(client):
    response = client.post(f"/v1/apis/{state['hello']['id']}/rollback", headers=ADMIN, json={"version": 1})
    assert response.status_code == 200 and response.json()["active_version"] == 1
    assert call(client, "GET", "/version").status_code == 404
    assert call(client, "GET", "/hello/back").json() == {"message": "hello back"}


def test_revoke_key(client):
    api_id = state["hello"]["id"]
    fresh = client.post(f"/v1/apis/{api_id}/keys", headers=ADMIN).json()
    state["fresh_key"] = fresh["api_key"]
    revoked = client.delete(f"/v1/apis/{api_id}/keys/{state['hello']['key_id']}", headers=ADMIN)
    assert revoked.status_code == 204
    response = call(client, "GET", "/hello/x")
    assert response.status_code == 403 and response.json()["error"]["code"] == "AUTH_INVALID"
    assert call(client, "GET", "/hello/x", key=fresh["api_key"]).status_code == 200


def test_everything_survives_kill_9_and_restart(client, server):
    server.kill()
    server.start()
    assert call(client, "GET", "/hello/again", key=state["fresh_key"]).json() == {"message": "hello again"}
    assert call(client, "GET", "/hello/again").status_code == 403  # still revoked
    assert call(client, "GET", "/version", key=state["fresh_key"]).status_code == 404  # still rolled back
    detail = client.get(f"/v1/apis/{state['hello']['id']}", headers=ADMIN).json()
    assert detail["active_version"] == 1 and [v["version"] for v in detail["versions"]] == [1, 2]
    assert {api["name"] for api in client.get("/v1/apis", headers=ADMIN).json()["apis"]} == {"hello", "inspect"}
    assert call(client, "GET", "/version", api="inspect").json() == {"version": 2}


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_curl_as_in_the_readme(server, tmp_path):
    base = server.url + state["hello"]["endpoint"]
    key = f"X-API-Key: {state['fresh_key']}"

    def curl(*args: str) -> bytes:
        command = ["curl", "-sS", "--fail-with-body", "-H", key, *args]
        return subprocess.run(command, check=True, capture_output=True).stdout

    assert curl(f"{base}/hello/world?times=2") == b'{"message":"hello world hello world"}'
    assert curl("-H", "content-type: application/json", "-d", '{"values": [1, 2, 3]}', f"{base}/sum") == b'{"sum":6}'
    upload = tmp_path / "upload.bin"
    upload.write_bytes(os.urandom(3 << 20))
    answer = curl("-F", f"file=@{upload}", "-F", "label=example", f"{base}/upload")
    assert b'"size":3145728' in answer and b'"label":"example"' in answer
    curl("-o", str(tmp_path / "hello.png"), f"{base}/png")
    assert (tmp_path / "hello.png").read_bytes() == b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    admin = subprocess.run(
        ["curl", "-sS", "-H", f"Authorization: Bearer {ADMIN_TOKEN}", f"{server.url}/v1/apis"],
        check=True, capture_output=True,
    ).stdout
    assert b'"name":"hello"' in admin


def test_the_remote_command_line(server, tmp_path, gateway_sources):
    env = server_env(WASMGATE_URL=server.url, WASMGATE_ADMIN_TOKEN=ADMIN_TOKEN)

    def wasmgate(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )

    source = tmp_path / "hello.py"
    source.write_text(gateway_sources["hello"][1])
    deployed = wasmgate("deploy", str(source), "--name", "cli-hello")
    assert deployed.returncode == 0, deployed.stderr
    assert "bundle" in deployed.stderr  # the build log, streamed
    lines = dict(line.split(":", 1) for line in deployed.stdout.splitlines() if ":" in line)
    endpoint, key = lines["endpoint"].strip(), lines["api key"].split()[0]
    response = httpx.get(endpoint + "/hello/cli", headers={"X-API-Key": key})
    assert response.json() == {"message": "hello cli"}

    again = wasmgate("deploy", str(source), "--name", "cli-hello")
    assert again.returncode == 0 and "version:  2" in again.stdout and "api key" not in again.stdout

    listed = wasmgate("apis")
    assert listed.returncode == 0 and "cli-hello" in listed.stdout and "hello" in listed.stdout
    logs = wasmgate("logs", "cli-hello")
    assert logs.returncode == 0 and "GET /hello/cli" in logs.stdout and "200 OK" in logs.stdout
    keys = wasmgate("keys", "cli-hello")
    assert keys.returncode == 0 and key.split("_")[1] in keys.stdout and key not in keys.stdout
    new = wasmgate("keys", "cli-hello", "--new")
    new_id = new.stdout.split("key id:")[1].split()[0]
    assert wasmgate("keys", "cli-hello", "--revoke", new_id).returncode == 0

    probe = tmp_path / "probe.py"
    probe.write_text(gateway_sources["probe"][1])
    deployed = wasmgate("deploy", str(probe), "--name", "cli-probe")
    assert deployed.returncode == 0, deployed.stderr
    lines = dict(line.split(":", 1) for line in deployed.stdout.splitlines() if ":" in line)
    crashed = httpx.get(lines["endpoint"].strip() + "/raise", headers={"X-API-Key": lines["api key"].split()[0]})
    assert crashed.status_code == 500 and "secret internals" not in crashed.text
    logs = wasmgate("logs", "cli-probe")  # the author sees the traceback the caller did not
    assert logs.returncode == 0 and "error: ValueError: secret internals" in logs.stdout, logs.stdout

    missing = wasmgate("logs", "no-such-api")
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"not a zip")
    failed = wasmgate("deploy", str(broken))
    assert failed.returncode == 1 and "BUILD_FAILED" in failed.stderr
