"""Noisy neighbours: a benign API's latency alone, and next to hostile APIs' bombs.

    apt-get install -y wrk
    .venv/bin/python benchmarks/bench_neighbours.py [--seconds 10] [--connections 4]

One gateway (its default: one process per core) serves a benign JSON echo and hostile APIs
that loop CPU, grow memory to their limit and sleep to their deadline. wrk measures the
echo alone, then again while hostile callers (several per bomb, each calling again as soon
as it is answered) keep every bomb busy. Prints both p99s, their ratio (the target is at
most 1.5), the benign error count, and what the hostile callers got; writes it as JSON.
"""

from __future__ import annotations

import argparse
import json
import threading
from collections import Counter
from pathlib import Path

import httpx

from compare import ROOT, TOKEN, deploy, fresh_gateway, wrk, wrk_scripts

HOSTILE_APP = '''
import time
from wasmgate import App

app = App()


@app.get("/cpu")
def cpu():
    while True:
        pass


@app.get("/memory")
def memory():
    hoard = []
    while True:
        hoard.append(bytearray(1 << 20))


@app.get("/sleep")
def sleep():
    time.sleep(3600)
'''
BOMBS = ("/cpu", "/memory", "/sleep")


def deploy_hostile(base: str) -> dict:
    response = httpx.post(
        f"{base}/v1/apis",
        json={"name": "hostile", "source": HOSTILE_APP, "limits": {"memory_mb": 64, "timeout_ms": 2000}},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=900,
    )
    response.raise_for_status()
    return response.json()


def hammer(base: str, api: dict, path: str, stop: threading.Event, outcomes: Counter) -> None:
    """Call `path` again as soon as it answers, until `stop`; count "hostile <path> <code>"."""
    with httpx.Client(base_url=base, timeout=60) as client:
        while not stop.is_set():
            response = client.get(f"/run/{api['id']}{path}", headers={"X-API-Key": api["api_key"]})
            outcomes[f"hostile {path} {outcome_code(response)}"] += 1


def outcome_code(response: httpx.Response) -> str:
    """"OK", or the error code of the gateway's JSON error body (a body without one says so)."""
    if response.status_code < 300:
        return "OK"
    try:
        return response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP_{response.status_code}_NOT_JSON"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration of each measurement")
    parser.add_argument("--connections", type=int, default=4, help="wrk connections to the benign API")
    parser.add_argument("--callers", type=int, default=3, help="hostile callers per bomb")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "neighbours.json")
    args = parser.parse_args()
    with fresh_gateway("wasmgate-neighbours-") as (base, _server, _data, tmp):
        benign, hostile = deploy(base, "benign", 0), deploy_hostile(base)
        script = wrk_scripts(tmp / "wrk", benign["api_key"])["echo"]
        url = f"{base}/run/{benign['id']}/echo"
        wrk(url, script, args.connections, 2)  # warm: pools filled, code paths hot
        alone = wrk(url, script, args.connections, args.seconds)
        stop, outcomes = threading.Event(), Counter()
        callers = [
            threading.Thread(target=hammer, args=(base, hostile, bomb, stop, outcomes))
            for bomb in BOMBS
            for _ in range(args.callers)
        ]
        for caller in callers:
            caller.start()
        try:
            noisy = wrk(url, script, args.connections, args.seconds)
        finally:
            stop.set()
            for caller in callers:
                caller.join()
    ratio = noisy["p99_ms"] / alone["p99_ms"]
    results = {
        "connections": args.connections,
        "alone": alone,
        "with_neighbours": noisy,
        "p99_ratio": round(ratio, 2),
        "hostile_outcomes": dict(sorted(outcomes.items())),
    }
    print(f"benign echo alone:           p50 {alone['p50_ms']:7.2f} ms  p99 {alone['p99_ms']:7.2f} ms"
          f"  {alone['rps']:7.1f} req/s  non-2xx {alone['non_2xx']}")
    print(f"next to CPU/memory/sleep:    p50 {noisy['p50_ms']:7.2f} ms  p99 {noisy['p99_ms']:7.2f} ms"
          f"  {noisy['rps']:7.1f} req/s  non-2xx {noisy['non_2xx']}")
    print(f"p99 ratio (target <= 1.5):   {ratio:.2f}")
    for outcome, count in sorted(outcomes.items()):
        print(f"  {outcome}: {count}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
