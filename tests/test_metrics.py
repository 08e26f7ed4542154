"""`GET /metrics` over real HTTP, from `wasmgate serve --workers 2` with a metrics token.

Calls of three APIs (one rate-limited, one failing in its sandbox, one over a quota) and two
queued jobs, sent on connections of their own so that the kernel spreads them over both
processes; one scrape, answered by either process, counts every one of them. Each process's
own share is read from its files in the multiprocess directory alone.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from gateway_support import (  # noqa: F401
    ADMIN,
    ServerProcess,
    data_dir_sharing_store,
    deploy_request,
    fresh,
    gateway_sources,
    parse_metrics,
    spread,
)

TOKEN = "metrics-test-token"
SCRAPER = {"Authorization": f"Bearer {TOKEN}"}
HELLO_CALLS, HELLO_LIMIT = 20, 14


@pytest.fixture(scope="module")
def server(gateway_sources, bundle_store, tmp_path_factory):  # noqa: F811
    tmp = tmp_path_factory.mktemp("metrics")
    process = ServerProcess(
        data_dir_sharing_store(tmp / "data", bundle_store), tmp / "server.log", args=("--workers", "2"),
        WASMGATE_METRICS_TOKEN=TOKEN, WASMGATE_JOB_WORKERS="0",  # jobs stay queued
    )
    process.start()
    yield process
    process.stop()



def deploy(server: ServerProcess, name: str, source: tuple[str, str], **fields) -> dict:
    created = fresh(server, "POST", "/v1/apis", headers=ADMIN, **deploy_request(name, source, **fields))
    assert created.status_code == 201, created.text
    return created.json()


def per_process(multiproc_dir: Path, scratch: Path) -> list[dict[str, float]]:
    """Each worker process's samples, read from its own files alone."""
    pids = {path.stem.rsplit("_", 1)[1] for path in multiproc_dir.glob("*.db")}
    shares = []
    for pid in sorted(pids):
        alone = scratch / pid
        alone.mkdir()
        for path in multiproc_dir.glob(f"*_{pid}.db"):
            shutil.copy(path, alone)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, str(alone))
        shares.append(parse_metrics(generate_latest(registry).decode()))
    return shares


def test_metrics_need_the_token_when_one_is_set(server):
    for headers, status, code in (({}, 401, "AUTH_MISSING"), ({"Authorization": "Bearer nope"}, 403, "AUTH_INVALID")):
        refused = fresh(server, "GET", "/metrics", headers=headers)
        assert refused.status_code == status and refused.headers["content-type"] == "application/json"
        body = refused.json()
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
        assert body["error"]["code"] == code
    answer = fresh(server, "GET", "/metrics", headers=SCRAPER)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    types = {family.name: family.type for family in text_string_to_metric_families(answer.text)}
    assert types["wasmgate_ratelimit_decisions"] == "counter" and types["wasmgate_instance_pool_ready"] == "gauge"
    assert "# HELP wasmgate_ratelimit_decisions_total " in answer.text


def test_one_scrape_counts_the_calls_every_process_answered(server, gateway_sources, tmp_path):  # noqa: F811
    hello = deploy(server, "limited", gateway_sources["hello"], rate_limit={"requests": HELLO_LIMIT, "per_seconds": 60})
    probe = deploy(server, "failing", gateway_sources["probe"])
    capped = deploy(server, "capped", gateway_sources["hello"], quota={"requests_per_day": 1})

    statuses = [r.status_code for r in spread(server, HELLO_CALLS, "GET", f"/run/{hello['id']}/hello/x",
                                               headers={"X-API-Key": hello["api_key"]})]
    assert sorted(statuses) == [200] * HELLO_LIMIT + [429] * (HELLO_CALLS - HELLO_LIMIT)
    raised = spread(server, 3, "GET", f"/run/{probe['id']}/raise", headers={"X-API-Key": probe["api_key"]})
    assert [r.json()["error"]["code"] for r in raised] == ["SANDBOX_ERROR"] * 3
    queued = spread(server, 2, "GET", f"/run/{probe['id']}/state",
                    headers={"X-API-Key": probe["api_key"], "Prefer": "respond-async"})
    assert [r.status_code for r in queued] == [202, 202]
    capped_key = {"X-API-Key": capped["api_key"]}
    assert fresh(server, "GET", f"/run/{capped['id']}/hello/x", headers=capped_key).status_code == 200
    over = fresh(server, "GET", f"/run/{capped['id']}/hello/x", headers=capped_key)
    assert over.json()["error"]["code"] == "QUOTA_EXCEEDED"

    text = fresh(server, "GET", "/metrics", headers=SCRAPER).text
    types = {family.name: family.type for family in text_string_to_metric_families(text)}
    assert types["wasmgate_requests"] == "counter" and types["wasmgate_request_duration_seconds"] == "histogram"
    m = parse_metrics(text)

    def requests(api: dict, status: int, outcome: str) -> float:
        return m[f"wasmgate_requests_total{{api={api['id']},outcome={outcome},status={status}}}"]

    assert requests(hello, 200, "OK") == HELLO_LIMIT
    assert requests(hello, 429, "RATE_LIMITED") == HELLO_CALLS - HELLO_LIMIT
    assert requests(probe, 500, "SANDBOX_ERROR") == 3
    assert requests(probe, 202, "OK") == 2
    assert requests(capped, 200, "OK") == 1 and requests(capped, 429, "QUOTA_EXCEEDED") == 1
    # latency: every call; fuel: the calls that ran in a sandbox
    assert m[f"wasmgate_request_duration_seconds_count{{api={hello['id']}}}"] == HELLO_CALLS
    assert m[f"wasmgate_request_duration_seconds_bucket{{api={hello['id']},le=+Inf}}"] == HELLO_CALLS
    assert m[f"wasmgate_request_fuel_used_count{{api={hello['id']}}}"] == HELLO_LIMIT
    assert m[f"wasmgate_request_fuel_used_count{{api={probe['id']}}}"] == 3
    assert m[f"wasmgate_request_fuel_used_sum{{api={hello['id']}}}"] > 0
    sandboxed = HELLO_LIMIT + 3 + 1
    assert m["wasmgate_ratelimit_decisions_total{decision=allowed}"] == sandboxed + 2 + 1  # + queued, + over quota
    assert m["wasmgate_ratelimit_decisions_total{decision=limited}"] == HELLO_CALLS - HELLO_LIMIT
    assert m["wasmgate_quota_rejections_total{quota=requests_per_day}"] == 1
    assert m["wasmgate_builds_total{result=cached}"] == 3  # the test apps are built once per session
    assert m["wasmgate_build_duration_seconds_count{result=cached}"] == 3
    assert m["wasmgate_jobs{state=queued}"] == 2 and m["wasmgate_jobs{state=running}"] == 0
    # each process's own figures, published for this scrape
    assert m["wasmgate_instance_pool_hits_total"] + m["wasmgate_instance_pool_misses_total"] == sandboxed
    assert m["wasmgate_apis_loaded"] == 3
    assert not [name for name in m if "api=-" in name]  # each process's start-up routing left no trace

    shares = per_process(server.data_dir / "metrics", tmp_path)
    ok = f"wasmgate_requests_total{{api={hello['id']},outcome=OK,status=200}}"
    assert len([share for share in shares if share.get(ok, 0) > 0]) == 2  # both processes answered some
    assert sum(share.get(ok, 0) for share in shares) == HELLO_LIMIT
