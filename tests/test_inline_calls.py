"""Calls run on the event loop's own thread (gateway.limits.inline), over real HTTP from
`wasmgate serve --workers 1`: one connection's calls of a short API run there, each in a
fresh instance; a call that runs past the inline budget (busy, or asleep) is answered by
one run on the worker pool, logged once, and its API runs on the pool until it has had a
streak of short calls again; one that would run to its deadline leaves the event loop at the budget."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from gateway.limits.inline import STREAK
from gateway_support import (  # noqa: F401
    ADMIN,
    ServerProcess,
    data_dir_sharing_store,
    deploy_request,
    gateway_sources,
    parse_metrics,
)

TOKEN = "inline-test-token"


@pytest.fixture(scope="module")
def server(gateway_sources, bundle_store, tmp_path_factory):  # noqa: F811
    tmp = tmp_path_factory.mktemp("inline")
    process = ServerProcess(
        data_dir_sharing_store(tmp / "data", bundle_store), tmp / "server.log", args=("--workers", "1"),
        WASMGATE_METRICS_TOKEN=TOKEN,
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture()
def probe(server, gateway_sources):  # noqa: F811
    """A fresh deploy of the probe app, and a client on one connection with its key."""
    with httpx.Client(base_url=server.url, timeout=60) as client:
        created = client.post("/v1/apis", headers=ADMIN, **deploy_request(f"probe-{uuid.uuid4().hex[:8]}", gateway_sources["probe"]))
        assert created.status_code == 201, created.text
        api = created.json()
        client.headers["X-API-Key"] = api["api_key"]
        yield api, client


def inline_calls(client: httpx.Client) -> dict[str, float]:
    samples = parse_metrics(client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text)
    return {outcome: samples.get(f"wasmgate_inline_calls_total{{outcome={outcome}}}", 0.0) for outcome in ("ran", "moved")}


def earn_the_streak(api: dict, client: httpx.Client) -> None:
    """Short calls until one has run inline (each a fresh instance: its counter reads 1)."""
    before = inline_calls(client)["ran"]
    for _ in range(STREAK * 4):
        answer = client.get(f"/run/{api['id']}/state")
        assert answer.status_code == 200 and answer.json() == {"calls": 1}
        if inline_calls(client)["ran"] > before:
            return
    pytest.fail(f"no call ran inline after {STREAK * 4} short ones")


@pytest.mark.parametrize("route", ["/spin?seconds=0.15", "/sleep?seconds=0.15"])
def test_a_call_past_the_budget_is_answered_once_from_the_pool(probe, route):
    api, client = probe
    earn_the_streak(api, client)
    before = inline_calls(client)
    answer = client.get(f"/run/{api['id']}{route}")
    assert answer.status_code == 200, answer.text
    assert float(answer.headers["X-Wasmgate-Duration-Ms"]) >= 150  # the whole second run's
    after = inline_calls(client)
    assert after == {"ran": before["ran"], "moved": before["moved"] + 1}
    logged = client.get(f"/v1/apis/{api['id']}/logs", headers=ADMIN, params={"limit": 50}).json()
    entries = logged["logs"]
    assert [e["path"] for e in entries].count(route.split("?")[0]) == 1
    # The next call runs on the pool: the API earns its streak again first.
    assert client.get(f"/run/{api['id']}/state").json() == {"calls": 1}
    assert inline_calls(client)["ran"] == before["ran"]


def test_a_call_that_outlives_the_budget_holds_the_event_loop_no_longer(probe, server):
    api, client = probe
    earn_the_streak(api, client)
    with ThreadPoolExecutor(1) as background:
        looping = background.submit(client.get, f"/run/{api['id']}/sleep?seconds=30")  # until its 2 s deadline
        time.sleep(0.3)
        with httpx.Client(base_url=server.url, timeout=10) as other:
            started = time.monotonic()
            assert other.get("/healthz").status_code == 200
            waited = time.monotonic() - started
        answer = looping.result()
    assert answer.status_code == 504 and answer.json()["error"]["code"] == "SANDBOX_TIMEOUT"
    assert waited < 1.0  # the loop is on a worker thread; inline, /healthz would wait ~1.7 s more
