"""benchmarks/compare.py's way of measuring over HTTP: every system takes turns, each turn
waits for the system before to be idle, rows combine their rounds, and a system that fails
is dropped and said to be skipped. wrk and the servers are stood in for: what is checked is
the order and the arithmetic, not timings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway_support import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import compare  # noqa: E402


@pytest.fixture
def recorded(monkeypatch):
    """wrk, the warm-up and the idle wait replaced by recorders; wrk answers req/s from a
    counter, so that every turn's figures differ."""
    log: list[tuple] = []
    turns = iter(range(1, 10_000))

    def fake_wrk(url, script, connections, seconds):
        n = next(turns)
        log.append(("wrk", url, connections, seconds))
        return {"rps": float(n), "p50_ms": float(n), "p99_ms": 10.0 * n, "non_2xx": 1, "socket_errors": 0}

    monkeypatch.setattr(compare, "wrk", fake_wrk)
    monkeypatch.setattr(compare, "_warm_up", lambda url, script: log.append(("warm", url)))
    monkeypatch.setattr(compare, "_settled", lambda system: log.append(("settled", system.name)))
    return log


def _system(name: str, floor: bool = False) -> compare.HttpSystem:
    scripts = {"echo": Path(f"/{name}/echo.lua"), "upload": Path(f"/{name}/upload.lua")}
    return compare.HttpSystem(name, f"http://{name}", "/run/x", scripts, pid=0, floor=floor)


def _turns(log: list[tuple], workload: str, connections: int) -> list[str]:
    """The systems in the order they took their counted turns at one workload and concurrency."""
    counted = [entry for entry in log if entry[0] == "wrk" and entry[2] == connections and entry[3] != 1]
    return [url.split("//")[1].split("/")[0] for _, url, _, _ in counted if url.endswith(f"/{workload}")]


def test_the_echo_is_measured_in_rounds_each_starting_one_system_later(recorded):
    systems = [_system("a", floor=True), _system("b"), _system("c")]
    results: dict = {"http": {}, "skipped": {}}
    compare.measure_interleaved(systems, 6, results)

    for connections in compare.CONNECTIONS:
        assert _turns(recorded, "echo", connections) == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
        assert _turns(recorded, "upload", connections) == ["a", "b", "c"]  # one turn each
    assert _turns(recorded, "healthz", 1) == ["a"] * compare.ROUNDS  # only a gateway has a floor
    echo_turns = {entry[3] for entry in recorded if entry[0] == "wrk" and entry[1].endswith("/echo") and entry[3] != 1}
    upload_turns = {entry[3] for entry in recorded if entry[0] == "wrk" and entry[1].endswith("/upload") and entry[3] != 1}
    assert echo_turns == {2} and upload_turns == {6}  # --seconds split into 3 rounds; the upload whole
    assert list(results["http"]) == ["a", "a /healthz", "b", "c"]
    assert set(results["http"]["b"]) == {f"{w}@{c}" for w in ("echo", "upload") for c in compare.CONNECTIONS}


def test_every_turn_waits_for_its_system_to_be_idle_before_the_next(recorded):
    compare.measure_interleaved([_system("a"), _system("b")], 6, {"http": {}, "skipped": {}})
    for i, entry in enumerate(recorded):
        if entry[0] == "wrk":
            system = entry[1].split("//")[1].split("/")[0]
            assert recorded[i + 1] == ("settled", system)


def test_a_row_is_the_mean_of_its_rounds_rps_and_the_median_of_their_latencies():
    rounds = [
        {"rps": 100.0, "p50_ms": 3.0, "p99_ms": 30.0, "non_2xx": 1, "socket_errors": 0},
        {"rps": 400.0, "p50_ms": 1.0, "p99_ms": 90.0, "non_2xx": 0, "socket_errors": 2},
        {"rps": 100.0, "p50_ms": 2.0, "p99_ms": 10.0, "non_2xx": 3, "socket_errors": 0},
    ]
    row = compare._combined(rounds)
    assert row == {"rps": 200.0, "p50_ms": 2.0, "p99_ms": 30.0, "non_2xx": 4, "socket_errors": 2,
                   "rounds_rps": [100.0, 400.0, 100.0]}


def test_a_system_that_fails_is_dropped_and_said_skipped_while_the_others_go_on(recorded, monkeypatch):
    measured = compare.wrk

    def failing_for_b(url, script, connections, seconds):
        if url.startswith("http://b/") and connections == 16:
            raise subprocess.CalledProcessError(1, ["wrk"])
        return measured(url, script, connections, seconds)

    monkeypatch.setattr(compare, "wrk", failing_for_b)
    results: dict = {"http": {}, "skipped": {}}
    compare.measure_interleaved([_system("a", floor=True), _system("b", floor=True)], 6, results)

    assert list(results["http"]) == ["a", "a /healthz"]
    assert "wrk failed on http://b/run/x/echo" in results["skipped"]["b"]
    assert _turns(recorded, "echo", 64) == ["a"] * compare.ROUNDS
    assert _turns(recorded, "healthz", 1) == ["a"] * compare.ROUNDS


def test_a_system_whose_warm_up_fails_is_dropped(recorded, monkeypatch):
    def refused(url, script):
        if url.startswith("http://a/"):
            raise compare.httpx.ConnectError("refused")

    monkeypatch.setattr(compare, "_warm_up", refused)
    results: dict = {"http": {}, "skipped": {}}
    compare.measure_interleaved([_system("a", floor=True), _system("b")], 6, results)
    assert list(results["http"]) == ["b"]
    assert "warm-up failed" in results["skipped"]["a"]
    assert not [entry for entry in recorded if entry[0] == "wrk" and entry[1].startswith("http://a/")]
