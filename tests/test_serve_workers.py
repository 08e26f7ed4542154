"""`wasmgate serve --workers N`: several processes on one port stay exactly as correct as one.

Embedded defaults (no Redis, SQLite): a key's rate limit holds across the processes, and a
deploy, hot swap or key revocation is on every process before it is answered. Each request
goes on a new connection, so the kernel spreads them over the processes.
"""

from __future__ import annotations

import time

import pytest

from gateway_support import (  # noqa: F401
    ADMIN,
    ServerProcess,
    data_dir_sharing_store,
    deploy_request,
    fresh,
    gateway_sources,
    spread,
)

WORKERS = 2


@pytest.fixture(scope="module")
def server(gateway_sources, bundle_store, tmp_path_factory):  # noqa: F811
    tmp = tmp_path_factory.mktemp("workers")
    process = ServerProcess(data_dir_sharing_store(tmp / "data", bundle_store), tmp / "server.log",
                            args=("--workers", str(WORKERS)))
    process.start()  # answers once one process does
    processes_answering(process)  # the others may still be starting on a busy machine
    yield process
    process.stop()


def processes_answering(server: ServerProcess, timeout_s: float = 60.0) -> set[int]:
    """The worker processes seen ready (`/readyz` 200) on new connections, spread until all
    WORKERS have answered (or, for a hang, `timeout_s` passed)."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while len(seen) < WORKERS and time.monotonic() < deadline:
        seen |= {r.json()["process"] for r in spread(server, 20, "GET", "/readyz") if r.status_code == 200}
    return seen


def test_requests_reach_every_worker_process(server):
    assert len(processes_answering(server)) == WORKERS


def test_a_rate_limit_admits_exactly_its_requests_across_workers(server, gateway_sources):  # noqa: F811
    created = fresh(server, "POST", "/v1/apis", headers=ADMIN,
                    **deploy_request("limited", gateway_sources["hello"], rate_limit={"requests": 10, "per_seconds": 60}))
    assert created.status_code == 201, created.text
    api = created.json()
    statuses = [r.status_code for r in spread(server, 30, "GET", f"/run/{api['id']}/hello/x",
                                               headers={"X-API-Key": api["api_key"]})]
    assert sorted(statuses) == [200] * 10 + [429] * 20
    logs = fresh(server, "GET", f"/v1/apis/{api['id']}/logs", params={"limit": 100}, headers=ADMIN).json()["logs"]
    assert len(logs) == 30  # calls answered by every process are in the log at once


def test_a_hot_swap_and_a_revocation_reach_every_worker_before_they_are_answered(server, gateway_sources):  # noqa: F811
    created = fresh(server, "POST", "/v1/apis", headers=ADMIN, **deploy_request("swapped", gateway_sources["hello"]))
    assert created.status_code == 201, created.text
    api = created.json()
    run, key = f"/run/{api['id']}", {"X-API-Key": api["api_key"]}
    assert {r.status_code for r in spread(server, 16, "GET", run + "/version", headers=key)} == {404}

    updated = fresh(server, "PUT", f"/v1/apis/{api['id']}", headers=ADMIN,
                    **deploy_request("swapped", gateway_sources["hello_v2"]))
    assert updated.status_code == 200, updated.text
    answers = spread(server, 16, "GET", run + "/version", headers=key)
    assert [r.json() for r in answers] == [{"version": 2}] * 16

    revoked = fresh(server, "DELETE", f"/v1/apis/{api['id']}/keys/{api['key_id']}", headers=ADMIN)
    assert revoked.status_code in (200, 204), revoked.text
    assert {r.status_code for r in spread(server, 16, "GET", run + "/version", headers=key)} == {403}


def test_serve_refuses_a_taken_port_before_preparing_anything(tmp_path):
    import socket
    import subprocess
    import sys

    from gateway_support import ROOT, server_env

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--workers", "2",
             "--data-dir", str(tmp_path / "data")],
            cwd=ROOT, env=server_env(), capture_output=True, text=True, timeout=60,
        )
    assert done.returncode == 1
    assert f"error: cannot listen on 127.0.0.1:{port}" in done.stderr and "Traceback" not in done.stderr
    assert "WASMGATE_ADMIN_TOKEN" not in done.stdout and not (tmp_path / "data").exists()
    bad = subprocess.run([sys.executable, "-m", "cli.main", "serve", "--workers", "0"], cwd=ROOT,
                         env=server_env(), capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "error: --workers must be at least 1" in bad.stderr


def test_access_log_is_off_by_default_and_on_when_asked(server, tmp_path):
    """Each call is in the invocation log; uvicorn's line per request only with WASMGATE_ACCESS_LOG."""
    spread(server, 4, "GET", "/readyz")
    assert '"GET /readyz HTTP/1.1" 200' not in server.log_path.read_text()

    logged = ServerProcess(tmp_path / "data", tmp_path / "server.log", args=("--workers", "1"),
                           WASMGATE_ACCESS_LOG="true")
    logged.start()
    try:
        fresh(logged, "GET", "/readyz")
    finally:
        logged.stop()
    assert '"GET /readyz HTTP/1.1" 200' in logged.log_path.read_text()
