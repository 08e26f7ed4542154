"""The soak's short version (benchmarks/soak.py runs the long one): mixed load on a real
gateway (benign calls, uploads, hostile bombs, hot swaps and rollbacks), then nothing lost,
nothing leaked.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

from gateway_support import ADMIN_TOKEN, ROOT, ServerProcess, data_dir_sharing_store

sys.path.insert(0, str(ROOT / "benchmarks"))

import soak  # noqa: E402

WARM_UP_S, LOAD_S = 6, 15  # the 10-minute run is benchmarks/results/soak.json


def test_mixed_load_loses_nothing_and_leaks_nothing(build_app, bundle_store, tmp_path, monkeypatch):
    with ThreadPoolExecutor(len(soak.SOURCES)) as pool:  # built once per session: the deploys find them
        for built in [pool.submit(build_app, source) for source in soak.SOURCES.values()]:
            built.result()
    monkeypatch.setattr(soak, "TOKEN", ADMIN_TOKEN)
    data_dir = data_dir_sharing_store(tmp_path / "data", bundle_store)
    server = ServerProcess(data_dir, tmp_path / "server.log", WASMGATE_RATE_LIMIT_REQUESTS="1000000000",
                           **soak.GATEWAY_ENV)
    server.start()
    try:
        report = soak.run_soak(server.url, server.process.pid, data_dir, LOAD_S, WARM_UP_S)
    finally:
        server.stop()
    print("start", report["start"], "end", report["end"], "RSS growth %", report["rss_growth_pct"],
          "outside the slots %", report["other_growth_pct"])  # -rP shows it
    outcomes = report["outcomes"]
    assert {key for key in outcomes if key.startswith(("benign", "upload", "deploy"))} == {
        "benign OK", "upload OK", "deploy OK"
    }, outcomes  # every benign call, upload and deploy answered as it should
    hostile = {key.split()[-1] for key in outcomes if key.startswith("hostile")}
    assert hostile <= {"SANDBOX_FUEL_EXHAUSTED", "SANDBOX_MEMORY_LIMIT", "SANDBOX_TIMEOUT", "API_BUSY"}, outcomes
    start, end = report["start"], report["end"]
    assert end["processes"] == start["processes"]
    assert end["fds"] <= start["fds"] + 8 and end["threads"] <= start["threads"] + 4, report
    assert end["temp_files"] == 0, report
    # Used instance slots keep up to WASMGATE_POOL_RESIDENT_MB each resident, a cache bounded by
    # the slot count that fills as more slots see use (a memory bomb's slot included): a leak
    # shows in the rest.
    assert report["other_growth_pct"] < 10, report
