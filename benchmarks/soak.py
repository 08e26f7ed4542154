"""A soak: minutes of mixed load on one gateway, then what it served and what it kept.

    .venv/bin/python benchmarks/soak.py [--minutes 10]

Benign JSON callers, multipart uploads (1 MB), hostile callers (CPU, memory and sleep
bombs) and a deployer that hot-swaps the benign API between two versions and rolls it back,
all at once, for the whole run. Reports requests served and outcomes by code, and, after a
warm-up and again after the load has stopped: the gateway's RSS (all its processes), open
file descriptors, threads, and temporary files left in its data dir. Growth of RSS under 10%
and no leaked descriptor, thread or file is the bar. `run_soak` is what the suite's
one-minute version (tests/test_soak.py) calls.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from bench_neighbours import HOSTILE_APP, hammer, outcome_code
from compare import ROOT, TOKEN, WASMGATE_APP, fresh_gateway, process_tree, rss_mb

# The benign API is the side-by-side benchmark's (echo, upload), in two versions to swap between.
SOURCES = {"v1": WASMGATE_APP.format(version=1), "v2": WASMGATE_APP.format(version=2), "hostile": HOSTILE_APP}
HOSTILE_LIMITS = {"memory_mb": 64, "timeout_ms": 1000}
UPLOAD = os.urandom(1 << 20)
SWAP_EVERY_S = 5.0
# Idle time before a snapshot: wasmtime's WASI runtime keeps an idle blocking thread for
# 10 s. Pools of pre-made instances go cold (and close what they hold) after POOL_HOT_S idle,
# so both snapshots see them empty: how many instances happen to be ready, each with its
# descriptors and memory, is not a leak either way.
SETTLE_S = 12.0
RESERVATION = 64 << 30  # address space only the pooling allocator reserves in one piece
GATEWAY_ENV = {"WASMGATE_POOL_HOT_S": "4"}


def footprint(pid: int, data_dir: Path) -> dict:
    """What the gateway's processes hold now. `slots_mb` is the part of `rss_mb` inside the
    pooling allocator's reservations: what used instance slots keep resident (each up to
    WASMGATE_POOL_RESIDENT_MB, so bounded by the slot count), which grows as more slots see
    use; `other_mb` is the rest, where a leak would show."""
    tree = process_tree(pid)
    fds = threads = 0
    slots_kb = 0
    for member in tree:
        try:
            fds += len(os.listdir(f"/proc/{member}/fd"))
            threads += len(os.listdir(f"/proc/{member}/task"))
            slots_kb += _reserved_rss_kb(Path(f"/proc/{member}/smaps").read_text())
        except OSError:
            pass
    scratch = sum(len(os.listdir(data_dir / name)) for name in ("requests", "sources") if (data_dir / name).is_dir())
    total = rss_mb(pid)
    return {"processes": len(tree), "rss_mb": round(total, 1), "slots_mb": round(slots_kb / 1024, 1),
            "other_mb": round(total - slots_kb / 1024, 1), "fds": fds, "threads": threads, "temp_files": scratch}


def _reserved_rss_kb(smaps: str) -> int:
    """Resident kB inside the pooling allocator's reservations: every run of adjacent
    mappings that holds a mapping of at least RESERVATION bytes (the allocator reserves
    address space for all slots up front; used slots are carved out of it, made accessible
    or mapped from the component's memory image)."""
    mappings = []  # (start, end, rss kB)
    for block in re.split(r"\n(?=[0-9a-f]+-[0-9a-f]+ )", smaps):
        found = re.match(r"([0-9a-f]+)-([0-9a-f]+) ", block)
        rss = re.search(r"^Rss:\s+(\d+) kB", block, re.M)
        if found and rss:
            mappings.append((int(found[1], 16), int(found[2], 16), int(rss[1])))
    total, run, reserved, end = 0, 0, False, None
    for start, stop, rss in mappings + [(-1, -1, 0)]:
        if start != end:  # a gap: the run before it ends
            total += run if reserved else 0
            run, reserved = 0, False
        run += rss
        reserved |= stop - start >= RESERVATION
        end = stop
    return total


def run_soak(base: str, pid: int, data_dir: Path, seconds: float, warm_up_s: float) -> dict:
    """Deploy, warm up (the same load for `warm_up_s`: pools filled, every worker slot and
    thread the load needs made), load for `seconds`, let it settle; the report."""
    admin = {"Authorization": f"Bearer {TOKEN}"}
    outcomes: Counter = Counter()
    with httpx.Client(base_url=base, timeout=900) as client:
        benign = _checked(client.post("/v1/apis", headers=admin, json={"name": "soak", "source": SOURCES["v1"]}))
        hostile = _checked(client.post("/v1/apis", headers=admin, json={
            "name": "soak-hostile", "source": SOURCES["hostile"], "limits": HOSTILE_LIMITS}))
        _checked(client.put(f"/v1/apis/{benign['id']}", headers=admin, json={"source": SOURCES["v2"]}))
        stop = threading.Event()

        def load() -> list[threading.Thread]:
            return [
                *(threading.Thread(target=_benign, args=(base, benign, stop, outcomes)) for _ in range(4)),
                threading.Thread(target=_uploads, args=(base, benign, stop, outcomes)),
                *(threading.Thread(target=hammer, args=(base, hostile, bomb, stop, outcomes))
                  for bomb in ("/cpu", "/memory", "/sleep")),
                threading.Thread(target=_deployer, args=(base, benign, stop, outcomes)),
            ]

        _run(load(), stop, warm_up_s)
        outcomes.clear()
        # Both snapshots are taken idle, after the same settling (pools cold and empty, idle
        # threads gone), so they compare like with like.
        time.sleep(SETTLE_S)
        _prune_idle_threads(base, pid)
        start = footprint(pid, data_dir)
        stop.clear()
        work = load()
        started = time.monotonic()
        _run(work, stop, seconds)
        elapsed = time.monotonic() - started
        time.sleep(SETTLE_S)  # queued log writes done, instances closed, idle threads gone
        _prune_idle_threads(base, pid)
        end = footprint(pid, data_dir)
    served = sum(count for key, count in outcomes.items() if not key.startswith("deploy"))  # bombs too
    return {
        "seconds": round(elapsed, 1),
        "requests": served,
        "req_per_s": round(served / elapsed, 1),
        "outcomes": dict(sorted(outcomes.items())),
        "start": start,
        "end": end,
        "rss_growth_pct": round(100 * (end["rss_mb"] - start["rss_mb"]) / start["rss_mb"], 1),
        "other_growth_pct": round(100 * (end["other_mb"] - start["other_mb"]) / start["other_mb"], 1),
    }


def _checked(response: httpx.Response) -> dict:
    if response.status_code >= 300:
        raise RuntimeError(f"{response.request.method} {response.request.url}: {response.status_code} {response.text}")
    return response.json()


def _run(work: list[threading.Thread], stop: threading.Event, seconds: float) -> None:
    for thread in work:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in work:
        thread.join()


def _benign(base: str, api: dict, stop: threading.Event, outcomes: Counter) -> None:
    with httpx.Client(base_url=base, timeout=60) as client:
        while not stop.is_set():
            response = client.post(f"/run/{api['id']}/echo", json={"a": 1, "b": [1, 2, 3]},
                                   headers={"X-API-Key": api["api_key"]})
            ok = response.status_code == 200 and response.json() == {"a": 1, "b": [1, 2, 3]}
            outcomes[f"benign {'OK' if ok else outcome_code(response)}"] += 1


def _prune_idle_threads(base: str, pid: int) -> None:
    """Have each gateway process end its idle worker threads before a snapshot. anyio's
    thread pool (sync endpoints, contended rate-limit decisions, background tasks) keeps a
    thread idle since the load's peak until its next call, which ends those idle for 10 s:
    without one, the count is that peak's, whatever leaks. `/readyz` (a sync endpoint: no
    sandbox, no pool) on new connections until every process serving HTTP has answered one:
    which process accepts a connection is the kernel's choice, and one can lose many in a row."""
    servers = _serving_processes(pid)
    seen: set[int] = set()
    for _ in range(500):
        with httpx.Client(base_url=base, timeout=60) as client:  # a new connection each time
            seen.add(_checked(client.get("/readyz"))["process"])
        if servers <= seen:
            return
    raise RuntimeError(f"gateway processes {sorted(servers - seen)} never answered")


def _serving_processes(pid: int) -> set[int]:
    """The processes `wasmgate serve` answers HTTP in: its worker processes (multiprocessing
    children, the resource tracker aside), or itself when it runs one."""
    workers = set()
    for child in process_tree(pid) - {pid}:
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"--multiprocessing-fork" in command:
            workers.add(child)
    return workers or {pid}


def _uploads(base: str, api: dict, stop: threading.Event, outcomes: Counter) -> None:
    digest = hashlib.sha256(UPLOAD).hexdigest()
    with httpx.Client(base_url=base, timeout=60) as client:
        while not stop.is_set():
            response = client.post(f"/run/{api['id']}/upload", files={"file": ("f.bin", UPLOAD)},
                                   headers={"X-API-Key": api["api_key"]})
            ok = response.status_code == 200 and response.json() == {"size": len(UPLOAD), "sha256": digest}
            outcomes[f"upload {'OK' if ok else outcome_code(response)}"] += 1


def _deployer(base: str, api: dict, stop: threading.Event, outcomes: Counter) -> None:
    """Hot swaps between the two versions (both built: no build in the loop), and rollbacks."""
    admin = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=base, timeout=900) as client:
        turn = 0
        while not stop.wait(SWAP_EVERY_S):
            turn += 1
            if turn % 3 == 0:
                response = client.post(f"/v1/apis/{api['id']}/rollback", headers=admin, json={"version": 1})
            else:
                response = client.put(f"/v1/apis/{api['id']}", headers=admin,
                                      json={"source": SOURCES["v1" if turn % 2 else "v2"]})
            outcomes[f"deploy {outcome_code(response)}"] += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--warm-up", type=float, default=60, help="seconds of the same load before the start snapshot")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "soak.json")
    args = parser.parse_args()
    with fresh_gateway("wasmgate-soak-", **GATEWAY_ENV) as (base, server, data, _tmp):
        report = run_soak(base, server.pid, data, args.minutes * 60, args.warm_up)
    print(json.dumps(report, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
