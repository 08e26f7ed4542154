"""Two gateway processes ("hosts") sharing one Redis and one PostgreSQL, as an operator runs them.

Host A builds (its store is the session's, so builds are cached); host B has an empty store
and must fetch every bundle from the shared database. Tests run in order on one pair of
servers: propagation of a deploy, a shared rate limit, hot swap, key revocation, deletion,
and a Redis outage under load.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from gateway_support import (  # noqa: F401
    ADMIN,
    ServerProcess,
    data_dir_sharing_store,
    deploy_request,
    gateway_sources,
    parse_metrics,
)
from postgres_support import fresh_database
from redis_server import RedisServer

state: dict = {}


@pytest.fixture(scope="module")
def redis_server():
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def shared_database():
    with fresh_database() as url:
        yield url


@pytest.fixture(scope="module")
def hosts(gateway_sources, redis_server, shared_database, bundle_store, tmp_path_factory):
    root = tmp_path_factory.mktemp("multihost")
    env = {
        "WASMGATE_REDIS_URL": redis_server.url,
        "WASMGATE_DATABASE_URL": shared_database,
        "WASMGATE_SYNC_INTERVAL_S": "3",
        # A Redis answer slower than this is decided by the fail-open policy: under the suite's
        # load 100 ms let a key limit admit 12 of 30 (a stopped Redis still fails at once).
        "WASMGATE_RATE_LIMIT_TIMEOUT_MS": "2000",
    }
    a = ServerProcess(data_dir_sharing_store(root / "a", bundle_store), root / "a.log", **env)
    (root / "b").mkdir()
    b = ServerProcess(root / "b", root / "b.log", **env)
    a.start()
    b.start()
    yield a, b
    a.stop()
    b.stop()


def run(host: ServerProcess, path: str, key: str, api: str = "hello", timeout: float = 30) -> httpx.Response:
    return httpx.get(f"{host.url}/run/{state[api]['id']}{path}", headers={"X-API-Key": key}, timeout=timeout)


def metrics(host: ServerProcess) -> dict[str, int]:
    return {name: int(value) for name, value in parse_metrics(httpx.get(f"{host.url}/metrics").text).items()}


def wait_for(predicate, timeout: float, step: float = 0.02) -> float:
    """Seconds until predicate() held; fails after `timeout`."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            pytest.fail(f"not true after {timeout} s")
        time.sleep(step)
    return time.monotonic() - started


def test_a_deploy_on_one_host_is_served_by_the_other(hosts, gateway_sources):
    a, b = hosts
    response = httpx.post(f"{a.url}/v1/apis", headers=ADMIN, timeout=600,
                          **deploy_request("hello", gateway_sources["hello"], rate_limit={"requests": 10, "per_seconds": 60}))
    assert response.status_code == 201, response.text
    state["hello"] = response.json()
    # B has never seen this bundle: it fetches it from PostgreSQL (and its compiled form).
    wait_for(lambda: run(b, "/hello/b", state["hello"]["api_key"]).status_code == 200, timeout=60, step=0.2)
    assert run(b, "/hello/b", state["hello"]["api_key"]).json() == {"message": "hello b"}


def test_a_key_limit_holds_across_hosts(hosts):
    a, b = hosts
    key = httpx.post(f"{a.url}/v1/apis/{state['hello']['id']}/keys", headers=ADMIN).json()["api_key"]
    # The key reaches B by pub/sub (under a second, typically), or by its next full re-read
    # (WASMGATE_SYNC_INTERVAL_S, 5 s). Until then B refuses it (403) before any rate limit,
    # so B's first answer that is not a 403 is the first request the limit counts.
    first: list[httpx.Response] = []
    wait_for(lambda: first.append(run(b, "/hello/x", key)) or first[-1].status_code != 403, timeout=10, step=0.05)
    responses = [first[-1]] + [run(host, "/hello/x", key) for host in [a, b] * 14 + [a]]
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 10 and statuses.count(429) == 20, statuses
    for r in responses:
        assert {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"} <= set(r.headers)
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["error"]["code"] == "RATE_LIMITED" and int(refused.headers["retry-after"]) >= 1


def test_a_hot_swap_on_one_host_is_served_by_the_other_within_a_second(hosts, gateway_sources):
    a, b = hosts
    key = httpx.post(f"{a.url}/v1/apis/{state['hello']['id']}/keys", headers=ADMIN).json()["api_key"]
    state["swap_key"] = key
    response = httpx.put(f"{a.url}/v1/apis/{state['hello']['id']}", headers=ADMIN, timeout=600,
                         **deploy_request("hello", gateway_sources["hello_v2"], rate_limit={"requests": 1000, "per_seconds": 60}))
    assert response.status_code == 200, response.text
    assert run(a, "/version", key).json() == {"version": 2}
    delay = wait_for(lambda: run(b, "/version", key).status_code == 200, timeout=5)
    assert delay < 1.0, f"B served the new version {delay:.2f} s after the swap"
    # B had loaded the new bundle before A switched (staged), so the switch was a re-read.
    assert metrics(b)["wasmgate_sync_staged_total"] >= 1
    assert metrics(a)["wasmgate_sync_stage_timeouts_total"] == 0


def test_a_key_revoked_on_one_host_is_refused_by_the_other(hosts):
    a, b = hosts
    key = state["swap_key"]
    assert run(b, "/version", key).status_code == 200
    key_id = key.split("_")[1]
    assert httpx.delete(f"{a.url}/v1/apis/{state['hello']['id']}/keys/{key_id}", headers=ADMIN).status_code == 204
    delay = wait_for(lambda: run(b, "/version", key).status_code == 403, timeout=5)
    assert delay < 1.0


def test_redis_stopped_mid_load(hosts, redis_server):
    """No request hangs while Redis is down (policy: open), and limits resume when it is back."""
    a, b = hosts
    key = httpx.post(f"{a.url}/v1/apis/{state['hello']['id']}/keys", headers=ADMIN).json()["api_key"]
    time.sleep(1.0)
    durations: list[float] = []
    statuses: list[int] = []
    stop = threading.Event()

    def load(host: ServerProcess) -> None:
        while not stop.is_set():
            started = time.monotonic()
            statuses.append(run(host, "/version", key, timeout=10).status_code)
            durations.append(time.monotonic() - started)

    with ThreadPoolExecutor(2) as pool:
        for host in (a, b):
            pool.submit(load, host)
        time.sleep(0.5)
        redis_server.stop()
        time.sleep(2.0)
        outage = len(statuses)
        redis_server.start()
        time.sleep(2.5)  # circuit breaker cool-down, then limits through Redis again
        stop.set()
    assert max(durations) < 2.0, f"a request took {max(durations):.2f} s while Redis was down"
    for host in (a, b):
        counts = metrics(host)
        assert counts["wasmgate_ratelimit_store_errors_total"] >= 1
        assert counts["wasmgate_ratelimit_fail_open_total"] >= 1
    assert set(statuses[:outage]) == {200}  # fail open
    # Both hosts count through Redis again (failing open reports the full bucket: 1000).
    remaining = [int(run(h, "/version", key).headers["ratelimit-remaining"]) for h in (a, b)]
    assert max(remaining) < 1000, remaining


def test_deleted_on_one_host_is_gone_from_the_other(hosts):
    a, b = hosts
    key = httpx.post(f"{a.url}/v1/apis/{state['hello']['id']}/keys", headers=ADMIN).json()["api_key"]
    time.sleep(1.0)
    assert httpx.delete(f"{a.url}/v1/apis/{state['hello']['id']}", headers=ADMIN).status_code == 204
    delay = wait_for(lambda: run(b, "/version", key).status_code == 404, timeout=5)
    assert delay < 1.0
