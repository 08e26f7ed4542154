"""Async jobs (`Prefer: respond-async`) on both queues: SQLite in the data dir, and Redis (a real
redis-server of the test's own, started here).

In process (TestClient): submit -> 202 -> poll -> the stored response byte-exact (JSON,
binary, uploads); a job longer than the sync timeout but within its async timeout; cancelling
a running job (busy and sleeping) within 100 ms and the worker free again; cancelling a queued
job; results expire; the queue survives a restart, and a stopping worker gives its running
job back. Over real processes: `kill -9` of a
`wasmgate worker` while it runs jobs; another worker takes them over, every job completes
once, the taken-over ones with `attempts` 2.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from gateway.http.app import create_app
from gateway.settings import Settings
from gateway_support import (  # noqa: F401
    ADMIN,
    ADMIN_TOKEN,
    ROOT,
    ServerProcess,
    data_dir_sharing_store,
    deploy_request,
    gateway_sources,
)
from redis_server import RedisServer

FINAL = {"succeeded", "failed", "cancelled"}
ASYNC = {"Prefer": "respond-async"}
# Sync calls stop after 1 s, jobs after 3 s; fuel enough for seconds of busy looping.
LIMITS = {"memory_mb": 64, "fuel": 50_000_000_000, "timeout_ms": 1000, "async_timeout_ms": 3000}
RESULT_TTL_S = 3.0
SLACK_S = 0.4  # scheduling slack on a busy two-core machine, on top of the 100 ms


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def backend(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def redis_server():
    with RedisServer() as server:
        yield server


def job_settings(data_dir: Path, redis_url: str | None, **overrides) -> Settings:
    values = dict(
        data_dir=data_dir, admin_token=ADMIN_TOKEN, redis_url=redis_url, workers=1, job_workers=1,
        job_lease_s=2.0, job_result_ttl_s=RESULT_TTL_S, max_async_timeout_ms=10_000, max_body_mb=4,
    )
    values.update(overrides)
    return Settings(**values)


class Gateway:
    def __init__(self, client: TestClient | httpx.Client) -> None:
        self.client = client
        self.api: dict = {}

    def deploy(self, source: tuple[str, str], name: str = "probe") -> dict:
        response = self.client.post("/v1/apis", headers=ADMIN, **deploy_request(name, source, limits=LIMITS))
        assert response.status_code == 201, response.text
        self.api = response.json()
        return self.api

    def submit(self, method: str, path: str, **kwargs) -> dict:
        headers = {"X-API-Key": self.api["api_key"], **ASYNC, **kwargs.pop("headers", {})}
        response = self.client.request(method, self.api["endpoint"] + path, headers=headers, **kwargs)
        assert response.status_code == 202, response.text
        body = response.json()
        assert body == {"job_id": body["job_id"], "status_url": f"/v1/jobs/{body['job_id']}"}
        assert response.headers["location"] == body["status_url"]
        return {**body, "request_id": response.headers["x-request-id"]}

    def job(self, job_id: str, key: str | None = None) -> httpx.Response:
        return self.client.get(f"/v1/jobs/{job_id}", headers={"X-API-Key": key or self.api["api_key"]})

    def cancel(self, job_id: str) -> httpx.Response:
        return self.client.delete(f"/v1/jobs/{job_id}", headers={"X-API-Key": self.api["api_key"]})

    def wait(self, job_id: str, states: set[str] = FINAL, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            record = self.job(job_id)
            assert record.status_code == 200, record.text
            if record.json()["state"] in states or time.monotonic() > deadline:
                return record.json()
            time.sleep(0.01)


def body_of(record: dict) -> bytes:
    response = record["response"]
    if response["body_encoding"] == "base64":
        return base64.b64decode(response["body"])
    return response["body"].encode()


@pytest.fixture(scope="module")
def gw(backend, redis_server, gateway_sources, tmp_path_factory, bundle_store) -> Gateway:
    data_dir = data_dir_sharing_store(tmp_path_factory.mktemp(f"jobs-{backend}") / "data", bundle_store)
    redis_url = redis_server.url if backend == "redis" else None
    with TestClient(create_app(job_settings(data_dir, redis_url))) as client:
        gateway = Gateway(client)
        gateway.deploy(gateway_sources["probe"])
        yield gateway


# -- in process -------------------------------------------------------------------------------


def test_submit_poll_and_the_stored_response_is_byte_exact(gw):
    data = os.urandom(300_000) + b"\x00\xff"
    binary = gw.submit("POST", "/echo", content=data, headers={"content-type": "application/x-test"})
    as_json = gw.submit("POST", "/json", json={"text": "ünïcödé", "n": [1, 2]})
    upload = os.urandom(200_000)
    files = gw.submit("POST", "/files", files={"f": ("u.bin", upload, "application/octet-stream")})

    record = gw.wait(binary["job_id"])
    assert record["state"] == record["status"] == "succeeded" and record["attempts"] == 1, record
    assert record["job_id"] == binary["job_id"] and record["api_id"] == gw.api["id"]
    response = record["response"]
    assert response["status"] == 200 and response["outcome"] == "OK" and response["fuel_used"] > 0
    assert response["body_encoding"] == "base64" and body_of(record) == data
    assert ["content-type", "application/x-test"] in response["headers"]
    assert record["expires_at"] is not None

    record = gw.wait(as_json["job_id"])
    assert record["response"]["body_encoding"] == "utf-8"
    assert record["response"]["body"] == '{"text":"ünïcödé","n":[1,2]}'

    record = gw.wait(files["job_id"])
    assert record["state"] == "succeeded", record
    assert [(f["filename"], f["size"], f["sha256"]) for f in json.loads(body_of(record))] == [
        ("u.bin", len(upload), hashlib.sha256(upload).hexdigest())
    ]


def test_job_records_need_the_apis_key(gw):
    job = gw.submit("GET", "/state")
    assert gw.client.get(job["status_url"]).status_code == 401
    assert gw.job(job["job_id"], key="wg_nope_nope").status_code == 403
    assert gw.client.delete(job["status_url"]).status_code == 401
    missing = gw.job("0" * 32)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"
    assert gw.wait(job["job_id"])["state"] == "succeeded"


def test_a_job_may_run_longer_than_a_sync_call(gw):
    key = {"X-API-Key": gw.api["api_key"]}
    sync = gw.client.get(gw.api["endpoint"] + "/sleep", params={"seconds": 1.5}, headers=key)
    assert sync.status_code == 504 and sync.json()["error"]["code"] == "SANDBOX_TIMEOUT"
    slow = gw.submit("GET", "/sleep", params={"seconds": 1.5})
    too_slow = gw.submit("GET", "/sleep", params={"seconds": 30})
    record = gw.wait(slow["job_id"])
    assert record["state"] == "succeeded" and record["response"]["body"] == '{"slept":1.5}', record
    record = gw.wait(too_slow["job_id"])
    assert record["state"] == "failed", record
    assert record["response"]["status"] == 504 and record["response"]["outcome"] == "SANDBOX_TIMEOUT"
    assert '"code":"SANDBOX_TIMEOUT"' in record["response"]["body"]
    assert 2900 <= record["response"]["duration_ms"] < 6000


@pytest.mark.parametrize("path", ["/spin", "/sleep"])
def test_cancelling_a_running_job_interrupts_it_within_100_ms(gw, path):
    running = gw.submit("GET", path, params={"seconds": 30})
    queued = gw.submit("GET", "/state")  # the one worker is busy: this one waits
    assert gw.wait(running["job_id"], {"running"})["state"] == "running"
    time.sleep(0.3)  # let the guest get going
    assert gw.job(queued["job_id"]).json()["state"] == "queued"

    cancelled_queued = gw.cancel(queued["job_id"])
    assert cancelled_queued.status_code == 200 and cancelled_queued.json()["state"] == "cancelled"
    assert cancelled_queued.json()["response"] is None

    started = time.monotonic()
    answer = gw.cancel(running["job_id"])
    elapsed = time.monotonic() - started
    assert answer.status_code == 200, answer.text
    record = answer.json()
    assert record["state"] == "cancelled" and record["cancel_requested"], record
    assert record["response"]["outcome"] == "SANDBOX_CANCELLED"
    assert elapsed < 0.1 + SLACK_S, elapsed

    again = gw.cancel(running["job_id"])
    assert again.status_code == 409 and again.json()["error"]["details"] == {"state": "cancelled"}
    after = gw.submit("GET", "/state")  # the worker is free again
    record = gw.wait(after["job_id"], timeout=5)
    assert record["state"] == "succeeded" and record["response"]["body"] == '{"calls":1}'
    assert gw.job(queued["job_id"]).json()["state"] == "cancelled"  # never ran


def test_results_expire(gw):
    job = gw.submit("GET", "/state")
    assert gw.wait(job["job_id"])["state"] == "succeeded"
    time.sleep(RESULT_TTL_S + 0.5)
    assert gw.job(job["job_id"]).status_code == 404


def test_async_timeout_is_capped_by_the_server(gw, gateway_sources):
    response = gw.client.post(
        "/v1/apis", headers=ADMIN,
        **deploy_request("greedy", gateway_sources["probe"], limits={"async_timeout_ms": 10_001}),
    )
    assert response.status_code == 422
    assert "WASMGATE_MAX_ASYNC_TIMEOUT_MS" in response.json()["error"]["message"]
    detail = gw.client.get(f"/v1/apis/{gw.api['id']}", headers=ADMIN).json()
    assert detail["limits"]["async_timeout_ms"] == 3000 and detail["limits"]["timeout_ms"] == 1000


def test_the_queue_survives_a_restart_and_a_stopping_worker_gives_its_job_back(
    backend, gateway_sources, tmp_path, bundle_store
):
    data_dir = data_dir_sharing_store(tmp_path / "data", bundle_store)
    with RedisServer() as redis:
        redis_url = redis.url if backend == "redis" else None
        with TestClient(create_app(job_settings(data_dir, redis_url, job_workers=1))) as client:
            gw = Gateway(client)
            gw.deploy(gateway_sources["probe"])
            interrupted = gw.submit("GET", "/sleep", params={"seconds": 1})
            assert gw.wait(interrupted["job_id"], {"running"})["state"] == "running"
        with TestClient(create_app(job_settings(data_dir, redis_url, job_workers=0))) as client:
            gw.client = client
            assert gw.job(interrupted["job_id"]).json()["state"] == "queued"  # given back at shutdown
            data = os.urandom(100_000)
            job = gw.submit("POST", "/echo", content=data)
            time.sleep(0.5)
            assert gw.job(job["job_id"]).json()["state"] == "queued"  # no worker here
        with TestClient(create_app(job_settings(data_dir, redis_url, job_workers=1))) as client:
            gw.client = client
            record = gw.wait(job["job_id"], timeout=20)
            assert record["state"] == "succeeded" and record["attempts"] == 1, record
            assert body_of(record) == data
            record = gw.wait(interrupted["job_id"], timeout=20)
            assert record["state"] == "succeeded" and record["attempts"] == 2, record


# -- over processes: kill -9 of a worker --------------------------------------------------------


def start_worker(server: ServerProcess, log_path: Path, concurrency: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "cli.main", "worker", "--data-dir", str(server.data_dir)]
    command += ["--concurrency", str(concurrency)]
    log = open(log_path, "ab")
    process = subprocess.Popen(command, cwd=ROOT, env=server.env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while "running" not in log_path.read_text(errors="replace"):
        assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
        time.sleep(0.05)
    return process


def test_kill_9_of_a_worker_loses_no_job(backend, gateway_sources, tmp_path, bundle_store):
    data_dir = data_dir_sharing_store(tmp_path / "data", bundle_store)
    with RedisServer() as redis:
        env = {"WASMGATE_JOB_WORKERS": "0", "WASMGATE_JOB_LEASE_S": "2", "WASMGATE_WORKERS": "1"}
        if backend == "redis":
            env["WASMGATE_REDIS_URL"] = redis.url
        server = ServerProcess(data_dir, tmp_path / "server.log", **env)
        server.start()
        workers: list[subprocess.Popen] = []
        try:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                gw = Gateway(client)
                gw.deploy(gateway_sources["probe"])
                jobs = [gw.submit("GET", "/sleep", params={"seconds": 1.5}) for _ in range(5)]
                workers.append(start_worker(server, tmp_path / "worker-a.log", concurrency=2))
                deadline = time.monotonic() + 30
                while True:
                    states = [gw.job(job["job_id"]).json()["state"] for job in jobs]
                    if states.count("running") == 2 or time.monotonic() > deadline:
                        break
                    time.sleep(0.02)
                assert states.count("running") == 2 and "succeeded" not in states, states
                killed = {job["job_id"] for job, state in zip(jobs, states) if state == "running"}
                workers[0].kill()  # SIGKILL: no shutdown, no release
                workers[0].wait(10)
                workers.append(start_worker(server, tmp_path / "worker-b.log", concurrency=2))

                records = [gw.wait(job["job_id"], timeout=60) for job in jobs]
                for record in records:
                    assert record["state"] == "succeeded", record
                    assert record["response"]["body"] == '{"slept":1.5}'
                    assert record["attempts"] == (2 if record["job_id"] in killed else 1), record
                # The invocation log is written behind each call, in batches (gateway.state.call_log):
                # a job's record can say succeeded a moment before its log entry is in.
                expected = sorted(job["request_id"] for job in jobs)
                deadline = time.monotonic() + 10
                while True:
                    logs = client.get(f"/v1/apis/{gw.api['id']}/logs", params={"limit": 100}, headers=ADMIN).json()
                    runs = sorted(entry["request_id"] for entry in logs["logs"] if entry["status"] == 200)
                    if len(runs) >= len(expected) or time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
                assert runs == expected  # each ran to the end once
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.terminate()
                    worker.wait(30)
            server.stop()
