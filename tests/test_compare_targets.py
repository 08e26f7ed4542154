"""benchmarks/compare.py's target rows: what each says it measured, from a run's results (the
figures are made up here; what is checked is the arithmetic and the wording, not timings)."""

from __future__ import annotations

import sys

from gateway_support import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import compare  # noqa: E402


def _row(rps: float, p50: float) -> dict:
    return {"rps": rps, "p50_ms": p50, "p99_ms": 2 * p50, "non_2xx": 0, "socket_errors": 0}


def _results(upload_ms: float, floor: dict | None) -> dict:
    ours = {f"{w}@{c}": _row(1000.0, upload_ms if w == "upload" else 1.0) for w in ("echo", "upload") for c in (1, 16, 64)}
    http_floor = {f"{w}@{c}": _row(2000.0, 30.0 if w == "upload" else 0.5) for w in ("echo", "upload") for c in (1, 16, 64)}
    results = {
        "http": {"wasmgate (2 processes)": ours, "wasmgate (2 processes) /healthz": {"healthz@1": _row(3000.0, 0.4)},
                 "HTTP floor": http_floor},
        "skipped": {},
        "runtime": {"pre-made": {"p50_ms": 0.42}, "inline-made": {"p50_ms": 1.0}, "reused (no isolation)": {"p50_ms": 0.44}},
        "first_request_after_restart_ms": 10.0,
        "scale": {"rows": [{"apis": 10, "rss_mb": 700.0}]},
    }
    if floor is not None:
        results["upload_floor"] = floor
    return results


def _line(text: str, start: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"| {start}"))


def test_the_upload_row_gives_the_floor_measured_in_the_same_run():
    text = compare.targets(_results(70.0, {"sandbox_p50_ms": 40.0, "host_sha256_ms": 5.0}))

    row = _line(text, "10 MB multipart")
    # the HTTP floor's upload (30 ms) less the host's hashing (5 ms), plus the sandbox alone (40 ms)
    assert "70.0 ms; floor 65.0 ms (1.08x)" in row
    assert "receiving it 25.0 ms" in row and "reading and hashing it 40.0 ms" in row
    assert row.endswith("| not met |")


def test_a_run_without_the_floor_still_reports_the_upload():
    row = _line(compare.targets(_results(45.0, None)), "10 MB multipart")
    assert row == "| 10 MB multipart p50 <= 50 ms | 45.0 ms | met |"


def test_the_pre_made_row_names_the_reused_instance_it_is_compared_with():
    row = _line(compare.targets(_results(45.0, None)), "runtime, pre-made")
    assert "0.420 ms, 0.95x reused (0.440 ms)" in row
    assert row.endswith("| not met |")  # under the reused call, over 0.4 ms
