"""The platform around APIs, over real HTTP against `wasmgate serve`: accounts and their tokens,
ownership (another account's API is 404), plans, pause and resume, PATCH without a rebuild,
failed builds kept with their log, each version's source, following logs (SSE and NDJSON),
listing jobs, public APIs and CORS.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time

import httpx
import jsonschema
import pytest

from gateway_support import (  # noqa: F401
    ADMIN,
    ROOT,
    ServerProcess,
    data_dir_sharing_store,
    deploy_request,
    gateway_sources,
    server_env,
)

PLANS = {"tiny": {"max_apis": 1, "requests": 3, "per_seconds": 3600}, "free": {"max_apis": 5}}


@pytest.fixture(scope="module")
def server(tmp_path_factory, bundle_store, gateway_sources):  # noqa: F811
    root = tmp_path_factory.mktemp("platform")
    process = ServerProcess(
        data_dir_sharing_store(root / "data", bundle_store), root / "server.log", ("--workers", "2"),
        WASMGATE_PLANS=json.dumps(PLANS),
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def deploy(client, gateway_sources, name: str, headers=ADMIN, source="hello", **fields) -> httpx.Response:  # noqa: F811
    return client.post("/v1/apis", headers=headers, **deploy_request(name, gateway_sources[source], **fields))


def create_account(client, name: str, plan: str | None = None) -> dict:
    body = {"name": name, **({"plan": plan} if plan else {})}
    response = client.post("/v1/accounts", headers=ADMIN, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_an_account_manages_only_its_own_apis(client, gateway_sources):  # noqa: F811
    alice = create_account(client, "alice")
    bob = create_account(client, "bob")
    assert alice["token"].startswith("wga_") and alice["plan"] == "free"
    assert client.get("/v1/me", headers=bearer(alice["token"])).json()["account"]["name"] == "alice"
    assert client.get("/v1/me", headers=ADMIN).json()["role"] == "admin"

    created = deploy(client, gateway_sources, "alice-hello", bearer(alice["token"]))
    assert created.status_code == 201, created.text
    api = created.json()
    assert api["owner"] == alice["id"]
    admins = deploy(client, gateway_sources, "admins-hello")
    assert admins.status_code == 201

    names = lambda token: {a["name"] for a in client.get("/v1/apis", headers=bearer(token)).json()["apis"]}  # noqa: E731
    assert names(alice["token"]) == {"alice-hello"}
    assert names(bob["token"]) == set()
    assert {"alice-hello", "admins-hello"} <= {a["name"] for a in client.get("/v1/apis", headers=ADMIN).json()["apis"]}
    # Bob cannot see, change or delete it: 404, as for an API that does not exist.
    for method, path in [("GET", ""), ("DELETE", ""), ("POST", "/pause"), ("GET", "/keys"), ("GET", "/logs")]:
        answer = client.request(method, f"/v1/apis/{api['id']}{path}", headers=bearer(bob["token"]))
        assert answer.status_code == 404, (method, path, answer.text)
        assert answer.json()["error"]["code"] == "NOT_FOUND"
    assert client.get(f"/v1/apis/{admins.json()['id']}", headers=bearer(alice["token"])).status_code == 404
    # Only the admin manages accounts.
    refused = client.post("/v1/accounts", headers=bearer(alice["token"]), json={"name": "mallory"})
    assert refused.status_code == 403
    assert client.get("/v1/accounts", headers=ADMIN).json()["accounts"][0]["name"] == "alice"
    assert "token" not in json.dumps(client.get("/v1/accounts", headers=ADMIN).json())
    assert client.get("/v1/me", headers=bearer("wga_nope_nope")).status_code == 403
    assert client.get("/v1/me").status_code == 401


def test_tokens_rotate_and_revoke(client):
    carol = create_account(client, "carol")
    fresh = client.post(f"/v1/accounts/{carol['id']}/tokens", headers=bearer(carol["token"]), json={})
    assert fresh.status_code == 201
    both = [carol["token"], fresh.json()["token"]]
    assert all(client.get("/v1/me", headers=bearer(t)).status_code == 200 for t in both)
    listed = client.get(f"/v1/accounts/{carol['id']}/tokens", headers=ADMIN).json()["tokens"]
    assert {t["id"] for t in listed} == {carol["token_id"], fresh.json()["id"]}
    assert client.delete(f"/v1/accounts/{carol['id']}/tokens/{carol['token_id']}", headers=ADMIN).status_code == 204
    assert client.get("/v1/me", headers=bearer(carol["token"])).status_code == 403
    rotated = client.post(f"/v1/accounts/{carol['id']}/tokens", headers=ADMIN, json={"revoke_others": True}).json()
    assert client.get("/v1/me", headers=bearer(both[1])).status_code == 403
    assert client.get("/v1/me", headers=bearer(rotated["token"])).status_code == 200


def test_a_plan_caps_apis_and_calls_of_the_whole_account(client, gateway_sources):  # noqa: F811
    dave = create_account(client, "dave", plan="tiny")
    first = deploy(client, gateway_sources, "dave-1", bearer(dave["token"]))
    assert first.status_code == 201
    second = deploy(client, gateway_sources, "dave-2", bearer(dave["token"]))
    assert second.status_code == 403 and second.json()["error"]["code"] == "PLAN_LIMIT"
    api = first.json()
    key = {"X-API-Key": api["api_key"]}
    statuses = [client.get(f"/run/{api['id']}/hello/x", headers=key).status_code for _ in range(5)]
    assert statuses.count(200) == 3 and statuses[3:] == [429, 429]
    assert client.post("/v1/accounts", headers=ADMIN, json={"name": "erin", "plan": "gold"}).status_code == 422


def test_deleting_an_account_deletes_its_apis(client, gateway_sources):  # noqa: F811
    frank = create_account(client, "frank")
    api = deploy(client, gateway_sources, "frank-hello", bearer(frank["token"])).json()
    assert client.delete(f"/v1/accounts/{frank['id']}", headers=ADMIN).status_code == 204
    assert client.get(f"/run/{api['id']}/hello/x", headers={"X-API-Key": api["api_key"]}).status_code == 404
    assert client.get("/v1/me", headers=bearer(frank["token"])).status_code == 403


def test_pause_and_resume(client, gateway_sources):  # noqa: F811
    api = deploy(client, gateway_sources, "pausable").json()
    key = {"X-API-Key": api["api_key"]}
    paused = client.post(f"/v1/apis/{api['id']}/pause", headers=ADMIN)
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    # Every worker process has the change before the pause was answered.
    for _ in range(6):
        answer = client.get(f"/run/{api['id']}/hello/x", headers=key)
        assert answer.status_code == 503
        assert answer.json()["error"]["code"] == "API_PAUSED"
        assert "x-wasmgate-fuel" not in answer.headers  # nothing ran
    assert client.get(f"/v1/apis/{api['id']}", headers=ADMIN).json()["status"] == "paused"
    resumed = client.post(f"/v1/apis/{api['id']}/resume", headers=ADMIN)
    assert resumed.json()["status"] == "active"
    for _ in range(6):
        assert client.get(f"/run/{api['id']}/hello/x", headers=key).json() == {"message": "hello x"}


def test_patch_changes_configuration_without_a_rebuild(client, gateway_sources):  # noqa: F811
    api = deploy(client, gateway_sources, "patchable").json()
    patched = client.patch(
        f"/v1/apis/{api['id']}", headers=ADMIN,
        json={"limits": {"timeout_ms": 1500}, "variables": {"GREETING": "hi"}, "secrets": {"TOKEN": "s3cr3t-value"}},
    )
    assert patched.status_code == 200, patched.text
    described = patched.json()
    assert described["version"] == 2 and described["limits"]["timeout_ms"] == 1500
    assert described["variables"] == {"GREETING": "hi"} and described["secrets"] == ["TOKEN"]
    hashes = {v["version"]: v["bundle_hash"] for v in described["versions"]}
    assert hashes[1] == hashes[2]
    # The secret's value is never returned.
    for path in ("", "/keys", "/logs"):
        assert "s3cr3t-value" not in client.get(f"/v1/apis/{api['id']}{path}", headers=ADMIN).text
    assert "s3cr3t-value" not in client.get("/v1/apis", headers=ADMIN).text
    removed = client.patch(f"/v1/apis/{api['id']}", headers=ADMIN, json={"secrets": {"TOKEN": None}}).json()
    assert removed["secrets"] == [] and removed["variables"] == {"GREETING": "hi"}
    bad = client.patch(f"/v1/apis/{api['id']}", headers=ADMIN, json={"requirements": ["x"]})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "VALIDATION_ERROR"
    assert client.get(f"/run/{api['id']}/hello/x", headers={"X-API-Key": api["api_key"]}).status_code == 200


def test_a_failed_build_is_kept_with_its_log_and_the_old_version_serves(client, gateway_sources):  # noqa: F811
    api = deploy(client, gateway_sources, "fragile").json()
    answers: list[httpx.Response] = []
    build = threading.Thread(
        target=lambda: answers.append(
            client.put(f"/v1/apis/{api['id']}", headers=ADMIN, json={"source": "def broken(:\n"})
        )
    )
    build.start()
    seen = set()
    while build.is_alive():  # the status says a build runs, while it runs
        seen.add(client.get(f"/v1/apis/{api['id']}", headers=ADMIN).json()["status"])
        time.sleep(0.05)
    build.join()
    assert "deploying" in seen
    broken = answers[0]
    assert broken.status_code == 422 and broken.json()["error"]["code"] == "BUILD_FAILED"
    described = client.get(f"/v1/apis/{api['id']}", headers=ADMIN).json()
    assert described["status"] == "active" and described["active_version"] == 1
    failed = described["versions"][-1]
    assert failed["version"] == 2 and failed["status"] == "failed" and "SyntaxError" in failed["build_log"]
    assert client.get(f"/run/{api['id']}/hello/x", headers={"X-API-Key": api["api_key"]}).status_code == 200
    refused = client.post(f"/v1/apis/{api['id']}/rollback", headers=ADMIN, json={"version": 2})
    assert refused.status_code == 409
    assert client.get(f"/v1/apis/{api['id']}/versions/2/source", headers=ADMIN).text == "def broken(:\n"


def test_a_versions_source_as_deployed(client, gateway_sources):  # noqa: F811
    api = deploy(client, gateway_sources, "sourced").json()
    source = client.get(f"/v1/apis/{api['id']}/versions/1/source", headers=ADMIN)
    assert source.status_code == 200
    assert source.text == gateway_sources["hello"][1]
    assert "hello.py" in source.headers["content-disposition"]
    assert client.get(f"/v1/apis/{api['id']}/versions/9/source", headers=ADMIN).status_code == 404


def _reader(client, url: str, headers: dict, lines: queue.Queue, stop: threading.Event) -> None:
    try:
        with client, client.stream("GET", url, headers=headers, timeout=httpx.Timeout(120, read=60)) as response:
            lines.put(("status", response.status_code, response.headers.get("content-type")))
            for line in response.iter_lines():
                lines.put(("line", line))
                if stop.is_set():
                    return
    except httpx.HTTPError:  # the server stopped at the end of the module
        pass


def _follow(server, api_id: str, accept: str | None, query: str = "") -> tuple[queue.Queue, threading.Event]:
    lines: queue.Queue = queue.Queue()
    stop = threading.Event()
    headers = {**ADMIN, **({"Accept": accept} if accept else {})}
    stream_client = httpx.Client(base_url=server.url)
    url = f"/v1/apis/{api_id}/logs?follow=true{query}"
    threading.Thread(target=_reader, args=(stream_client, url, headers, lines, stop), daemon=True).start()
    return lines, stop


def _entries(lines: queue.Queue, count: int, sse: bool) -> list[dict]:
    found, deadline = [], time.monotonic() + 60
    while len(found) < count and time.monotonic() < deadline:
        try:
            item = lines.get(timeout=1)
        except queue.Empty:
            continue
        if item[0] != "line":
            continue
        line = item[1]
        if sse and line.startswith("data: "):
            found.append(json.loads(line[6:]))
        elif not sse and line.strip():
            found.append(json.loads(line))
    return found


def test_logs_follow_as_server_sent_events_and_ndjson(server, client, gateway_sources):  # noqa: F811
    api = deploy(client, gateway_sources, "followed").json()
    key = {"X-API-Key": api["api_key"]}
    client.get(f"/run/{api['id']}/hello/before", headers=key)  # before following: not streamed
    sse, stop_sse = _follow(server, api["id"], None)
    ndjson, stop_ndjson = _follow(server, api["id"], "application/x-ndjson", "&outcome=OK")
    assert sse.get(timeout=30)[1:] == (200, "text/event-stream; charset=utf-8")
    assert ndjson.get(timeout=30)[1] == 200
    time.sleep(0.5)  # both streams have taken their starting point
    client.get(f"/run/{api['id']}/hello/one", headers=key)
    client.get(f"/run/{api['id']}/missing", headers=key)
    client.get(f"/run/{api['id']}/hello/two", headers=key)
    events = _entries(sse, 3, sse=True)
    assert [e["path"] for e in events] == ["/hello/one", "/missing", "/hello/two"]
    assert [e["status"] for e in events] == [200, 404, 200]
    assert events[0]["id"] < events[1]["id"] < events[2]["id"]
    lines = _entries(ndjson, 3, sse=False)
    # The filter: only OK outcomes (the 404 the guest answered is OK too: the call completed).
    assert [e["path"] for e in lines] == ["/hello/one", "/missing", "/hello/two"]
    stop_sse.set(), stop_ndjson.set()
    filtered = client.get(f"/v1/apis/{api['id']}/logs?status=404", headers=ADMIN).json()["logs"]
    assert [e["path"] for e in filtered] == ["/missing"]
    assert client.get(f"/v1/apis/{api['id']}/logs?since=yesterday", headers=ADMIN).status_code == 422


def test_jobs_are_listed_newest_first_page_by_page(client, gateway_sources):  # noqa: F811
    api = deploy(client, gateway_sources, "jobbed").json()
    key = {"X-API-Key": api["api_key"]}
    submitted = []
    for n in range(3):
        answer = client.get(f"/run/{api['id']}/hello/j{n}", headers={**key, "Prefer": "respond-async"})
        assert answer.status_code == 202
        submitted.append(answer.json()["job_id"])
        time.sleep(0.01)
    listed = client.get("/v1/jobs", headers=key).json()
    assert [j["job_id"] for j in listed["jobs"]] == submitted[::-1]
    first = client.get("/v1/jobs?limit=2", headers=key).json()
    assert [j["job_id"] for j in first["jobs"]] == submitted[:0:-1] and first["next_cursor"]
    rest = client.get(f"/v1/jobs?limit=2&cursor={first['next_cursor']}", headers=key).json()
    assert [j["job_id"] for j in rest["jobs"]] == submitted[:1] and rest["next_cursor"] is None
    by_admin = client.get(f"/v1/jobs?api={api['id']}", headers=ADMIN).json()
    assert len(by_admin["jobs"]) == 3
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = client.get(f"/v1/jobs?api={api['id']}&state=succeeded", headers=ADMIN).json()["jobs"]
        if len(done) == 3:
            break
        time.sleep(0.2)
    assert len(done) == 3
    other = deploy(client, gateway_sources, "jobbed-other").json()
    refused = client.get(f"/v1/jobs?api={other['id']}", headers=key)
    assert refused.status_code == 403
    assert client.get("/v1/jobs?state=bogus", headers=ADMIN).status_code == 422


def test_a_public_api_with_cors(client, gateway_sources):  # noqa: F811
    api = deploy(client, gateway_sources, "open-to-all").json()
    assert client.get(f"/run/{api['id']}/hello/x").status_code == 401
    cors = {"allow_origins": ["https://app.example"], "allow_methods": ["GET", "POST"],
            "allow_headers": ["content-type"], "max_age": 120}
    patched = client.patch(f"/v1/apis/{api['id']}", headers=ADMIN, json={"auth": "public", "cors": cors}).json()
    assert patched["auth"] == "public" and patched["cors"] == cors
    answer = client.get(f"/run/{api['id']}/hello/x", headers={"Origin": "https://app.example"})
    assert answer.status_code == 200 and answer.json() == {"message": "hello x"}
    assert answer.headers["access-control-allow-origin"] == "https://app.example"
    preflight = client.options(
        f"/run/{api['id']}/sum",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-methods"] == "GET, POST"
    assert preflight.headers["access-control-max-age"] == "120"
    assert "x-wasmgate-fuel" not in preflight.headers  # answered by the gateway
    stranger = client.options(
        f"/run/{api['id']}/sum", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert stranger.status_code == 403 and "access-control-allow-origin" not in stranger.headers
    job = client.get(f"/run/{api['id']}/hello/later", headers={"Prefer": "respond-async"})
    assert job.status_code == 202
    assert client.get(job.json()["status_url"]).status_code == 200  # its caller has no key: the job id is enough
    back = client.patch(f"/v1/apis/{api['id']}", headers=ADMIN, json={"auth": "key"}).json()
    assert back["auth"] == "key"
    assert client.get(f"/run/{api['id']}/hello/x").status_code == 401
    assert client.get(job.json()["status_url"]).status_code == 401  # keys again


def test_variables_and_secrets_reach_only_the_guests_environment(client, gateway_sources):  # noqa: F811
    api = deploy(
        client, gateway_sources, "configured", source="probe",
        variables={"GREETING": "hi"}, secrets={"TOKEN": "s3cr3t-value"},
    ).json()
    key = {"X-API-Key": api["api_key"]}
    read = lambda name, **headers: client.get(f"/run/{api['id']}/env?name={name}", headers={**key, **headers})  # noqa: E731
    assert read("GREETING").json() == {"value": "hi"}
    assert read("TOKEN").json() == {"value": "s3cr3t-value"}
    # A caller cannot set the guest's environment.
    assert read("GREETING", **{"X-Wasmgate-Env": '{"GREETING": "evil"}'}).json() == {"value": "hi"}
    logs = client.get(f"/v1/apis/{api['id']}/logs", headers=ADMIN).json()["logs"]
    printed = [entry["stdout"] for entry in logs]
    assert "TOKEN is ***\n" in printed and "GREETING is hi\n" in printed
    assert "s3cr3t-value" not in client.get(f"/v1/apis/{api['id']}/logs", headers=ADMIN).text
    # PATCH: a new version with the same bundle, the new environment at once.
    client.patch(f"/v1/apis/{api['id']}", headers=ADMIN, json={"variables": {"GREETING": "hello"}})
    assert read("GREETING").json() == {"value": "hello"}
    assert read("TOKEN").json() == {"value": "s3cr3t-value"}


def test_the_admin_token_rotates_without_a_restart(tmp_path, bundle_store):
    server = ServerProcess(data_dir_sharing_store(tmp_path / "data", bundle_store), tmp_path / "server.log")
    del server.env["WASMGATE_ADMIN_TOKEN"]
    server.start()
    try:
        first = server.log_path.read_text().split("WASMGATE_ADMIN_TOKEN=")[1].split()[0]
        assert httpx.get(server.url + "/v1/me", headers=bearer(first)).status_code == 200
        rotated = subprocess.run(
            [sys.executable, "-m", "cli.main", "admin-token", "rotate", "--data-dir", str(server.data_dir)],
            cwd=ROOT, env=server_env(), capture_output=True, text=True, timeout=60,
        )
        assert rotated.returncode == 0, rotated.stderr
        second = rotated.stdout.split("WASMGATE_ADMIN_TOKEN=")[1].split()[0]
        assert httpx.get(server.url + "/v1/me", headers=bearer(second)).json()["role"] == "admin"
        assert httpx.get(server.url + "/v1/me", headers=bearer(first)).status_code == 403
    finally:
        server.stop()


def test_the_platforms_answers_match_the_control_planes_document(client, gateway_sources):  # noqa: F811
    document = client.get("/openapi.json").json()

    def check(response: httpx.Response, status: int, schema: str) -> dict:
        assert response.status_code == status, response.text
        root = {"$ref": f"#/components/schemas/{schema}", "components": document["components"]}
        jsonschema.Draft202012Validator(root).validate(response.json())
        return response.json()

    grace = check(client.post("/v1/accounts", headers=ADMIN, json={"name": "grace"}), 201, "AccountCreated")
    check(client.get("/v1/accounts", headers=ADMIN), 200, "AccountList")
    check(client.get("/v1/me", headers=bearer(grace["token"])), 200, "Me")
    check(client.post(f"/v1/accounts/{grace['id']}/tokens", headers=ADMIN), 201, "TokenCreated")
    check(client.get(f"/v1/accounts/{grace['id']}/tokens", headers=ADMIN), 200, "TokenList")
    api = deploy(client, gateway_sources, "documented", bearer(grace["token"])).json()
    path = f"/v1/apis/{api['id']}"
    check(client.post(path + "/pause", headers=ADMIN), 200, "ApiDescription")
    check(client.get("/v1/apis", headers=ADMIN), 200, "ApiList")
    check(client.post(path + "/resume", headers=ADMIN), 200, "ApiDescription")
    patched = {"secrets": {"S": "v"}, "auth": "public", "cors": {"allow_origins": ["*"]}}
    check(client.patch(path, headers=ADMIN, json=patched), 200, "ApiDescription")
    client.get(f"/run/{api['id']}/hello/x")
    check(client.get(path + "/logs", headers=ADMIN), 200, "LogList")
    client.put(path, headers=ADMIN, json={"source": "import nonexistent_module_xyz\n"})
    described = check(client.get(path, headers=ADMIN), 200, "ApiDescription")
    assert described["versions"][-1]["status"] == "failed"
    check(client.get(f"/v1/jobs?api={api['id']}", headers=ADMIN), 200, "JobList")


def test_a_follower_does_not_hold_a_stopping_gateway(tmp_path, bundle_store, gateway_sources):  # noqa: F811
    server = ServerProcess(
        data_dir_sharing_store(tmp_path / "data", bundle_store), tmp_path / "server.log", ("--workers", "2")
    )
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=120) as c:
            api = deploy(c, gateway_sources, "stopping").json()
        lines, _ = _follow(server, api["id"], None)
        assert lines.get(timeout=30)[1] == 200
    finally:
        server.stop()  # SIGTERM; SIGKILL if still running 30 s later
    assert server.process.returncode == 0, server.log_path.read_text()[-2000:]
