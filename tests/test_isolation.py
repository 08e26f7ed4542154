"""A guest sees nothing of the host: no files, environment, network, processes or native code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime import Limits, SandboxError, SandboxRequest


@pytest.fixture(scope="module")
def walls(runtime, build_app):
    bundle = build_app("probe.py")
    response = runtime.invoke(bundle, SandboxRequest("GET", "/walls"), Limits(timeout_ms=10_000)).response
    assert response.status == 200
    return json.loads(response.body)


@pytest.mark.parametrize("attempt", ["read_passwd", "list_root", "environ_secret", "write_app", "write_stdlib", "socket", "fork", "ctypes", "thread"])
def test_way_out_is_closed(walls, attempt):
    if attempt == "environ_secret":
        assert walls["environ"] == {"ok": True, "value": "{}"}
        return
    assert walls[attempt]["ok"] is False, walls[attempt]


def test_host_environment_does_not_leak(runtime, build_app, monkeypatch):
    monkeypatch.setenv("WASMGATE_TEST_SECRET", "hunter2")
    response = runtime.invoke(build_app("probe.py"), SandboxRequest("GET", "/walls"), Limits(timeout_ms=10_000)).response
    assert b"hunter2" not in response.body


def test_state_does_not_leak_between_requests(runtime, build_app):
    bundle = build_app("probe.py")
    bodies = [runtime.invoke(bundle, SandboxRequest("GET", "/state"), Limits()).response.body for _ in range(3)]
    assert bodies == [b'{"calls":1}'] * 3


def test_each_instance_draws_its_own_random_numbers(runtime, build_app):
    bundle = build_app("probe.py")
    draws = [json.loads(runtime.invoke(bundle, SandboxRequest("GET", "/random"), Limits()).response.body)["bits"]
             for _ in range(3)]
    assert len(set(draws)) == 3, draws


def test_lazy_stdlib_import_inside_a_handler(runtime, build_app):
    response = runtime.invoke(build_app("probe.py"), SandboxRequest("GET", "/lazy"), Limits()).response
    assert response.body == b'{"match":true}'


def test_no_subprocess(runtime, build_app, tmp_path: Path):
    marker = tmp_path / "escaped"
    with pytest.raises(SandboxError):
        runtime.invoke(build_app("probe.py"), SandboxRequest("GET", "/spawn", query=[("marker", str(marker))]), Limits())
    assert not marker.exists()
