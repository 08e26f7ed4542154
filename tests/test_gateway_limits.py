"""Rate-limit headers on every call, the default plan, API-wide limits, and per-key quotas."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient
from test_gateway_api import Gateway, assert_error, settings_for

from gateway.http.app import create_app
from gateway_support import ADMIN, data_dir_sharing_store, gateway_sources  # noqa: F401


@pytest.fixture(scope="module")
def gw(gateway_sources, tmp_path_factory, bundle_store):
    data_dir = data_dir_sharing_store(tmp_path_factory.mktemp("limits") / "data", bundle_store)
    settings = settings_for(data_dir, rate_limit_requests=50, rate_limit_per_seconds=60, rate_limit_burst=5)
    with TestClient(create_app(settings)) as client:
        gateway = Gateway(client)
        gateway.deploy("plain", gateway_sources["hello"])  # no rate_limit: the server's plan
        gateway.deploy("shared", gateway_sources["hello_v2"],
                       rate_limit={"requests": 100, "per_seconds": 60, "api_requests": 3})
        gateway.deploy("quota", gateway_sources["probe"], quota={"requests_per_day": 2, "fuel_per_month": 10**12})
        yield gateway


def new_key(gw: Gateway, name: str) -> str:
    return gw.client.post(f"/v1/apis/{gw.apis[name]['id']}/keys", headers=ADMIN).json()["api_key"]


def test_the_default_plan_applies_with_its_burst_and_headers(gw):
    responses = [gw.call("plain", "GET", "/hello/x") for _ in range(6)]
    assert [r.status_code for r in responses] == [200] * 5 + [429]
    assert [int(r.headers["ratelimit-remaining"]) for r in responses[:5]] == [4, 3, 2, 1, 0]
    assert all(r.headers["ratelimit-limit"] == "5" for r in responses)
    refused = assert_error(responses[5], 429, "RATE_LIMITED")
    assert refused is not None and int(responses[5].headers["retry-after"]) >= 1
    assert "ratelimit-reset" in responses[5].headers


def test_errors_from_the_guest_carry_the_headers_too(gw):
    response = gw.call("plain", "GET", "/missing", key=new_key(gw, "plain"))
    assert response.status_code == 404 and response.headers["ratelimit-limit"] == "5"


def test_an_api_wide_limit_spans_its_keys(gw):
    keys = [new_key(gw, "shared") for _ in range(2)] + [gw.apis["shared"]["api_key"]]
    statuses = [gw.call("shared", "GET", "/version", key=key).status_code for key in keys * 2]
    assert statuses == [200, 200, 200, 429, 429, 429]


def test_a_daily_request_quota_per_key_and_its_report(gw):
    key = new_key(gw, "quota")
    statuses = [gw.call("quota", "GET", "/state", key=key).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    over = gw.call("quota", "GET", "/state", key=key)
    error = assert_error(over, 429, "QUOTA_EXCEEDED")
    assert error["details"] == {"quota": "requests_per_day", "limit": 2, "used": 2}
    assert 1 <= int(over.headers["retry-after"]) <= 86_401
    assert gw.call("quota", "GET", "/state", key=new_key(gw, "quota")).status_code == 200  # other keys unaffected

    usage = gw.client.get(f"/v1/apis/{gw.apis['quota']['id']}/usage", headers=ADMIN).json()
    assert usage["quota"] == {"requests_per_day": 2, "fuel_per_month": 10**12}
    mine = next(k for k in usage["keys"] if key.split("_")[1] == k["key_id"])
    assert mine["day"]["requests"] == 2 and mine["month"]["requests"] == 2
    assert mine["month"]["fuel"] > 0


def test_quota_and_rate_limit_specs_are_validated(gw):
    response = gw.client.put(f"/v1/apis/{gw.apis['quota']['id']}", headers=ADMIN,
                             json={"source": "x", "quota": {"requests_per_week": 5}})
    assert_error(response, 422, "VALIDATION_ERROR")
