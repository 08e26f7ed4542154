"""What an unchanged FastAPI app costs per request against the same echo in wasmgate's SDK.

    .venv/bin/python benchmarks/bench_fastapi.py [--requests 300] [--seconds 5] [--out benchmarks/results/fastapi.json]

Both apps echo `{"name": "widget", "price": 9.5, "tags": ["a", "b"]}`: the SDK's with a
`dict` body, FastAPI's with a pydantic model as its body and response model. A third, the
same echo in plain Starlette (what FastAPI runs on, without FastAPI's own request handling),
shows how much of the gap is the framework underneath. Every request
gets a fresh instance (never used before), measured three ways:

- pre-made: the caller-visible time when the pool made (and warmed) the instance before the
  request (the gateway's usual path);
- inline-made: the caller-visible time when the request makes its own instance;
- whole life: the CPU one request costs in all when throughput-bound (make, call, close;
  the pool then skips the warm-up), whoever pays it: what bounds throughput.

The apps are called interleaved in one process, so drift hits every app alike; the table
prints p50 and p99 of each and the ratios FastAPI / SDK (the target is at most 1.5), with
the fuel each call burns.

Then what a caller pays per request: the three apps deployed in one `wasmgate serve` (its
default processes, as benchmarks/compare.py runs it), each sent the echo over HTTP by wrk at
1 connection (p50) and at 16 (requests a second), the apps taking turns, three rounds (the
median round counts); the ratios FastAPI / SDK of the p50 and of the CPU a request costs
when throughput-bound (the inverse of the requests a second). `--seconds 0` skips it (wrk
is needed: `apt-get install -y wrk`). Builds are cached in benchmarks/.cache.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from builder.build import build  # noqa: E402
from runtime import BundleStore, Limits, PoolBudget, Runtime, SandboxRequest  # noqa: E402

CACHE = ROOT / "benchmarks" / ".cache"
WAYS = ("pre-made", "inline-made", "whole life")
BODY = b'{"name": "widget", "price": 9.5, "tags": ["a", "b"]}'
SDK_APP = '''
from wasmgate import App

app = App()


@app.post("/echo")
def echo(body: dict):
    return body
'''
FASTAPI_APP = '''
from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


@app.post("/echo", response_model=Item)
async def echo(item: Item):
    return item
'''


STARLETTE_APP = '''
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def echo(request: Request):
    return JSONResponse(await request.json())


app = Starlette(routes=[Route("/echo", echo, methods=["POST"])])
'''


APPS = {"sdk": SDK_APP, "fastapi": FASTAPI_APP, "starlette": STARLETTE_APP}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _bundle(store: BundleStore, runtime: Runtime, name: str, source: str):  # noqa: ANN202
    path = CACHE / f"fastapi-bench-{name}" / "app.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    return build(path, store, runtime=runtime, log=lambda line: print(f"  [{name}] {line}", flush=True)).bundle


def _settled(pool: Runtime, depth: int) -> None:
    """Wait for the pool at rest: full, nothing being made or closed."""
    while (stats := pool.pool.stats())["ready"] < depth or stats["live"] > stats["ready"]:
        time.sleep(0.001)


def over_http(seconds: int, rounds: int = 3) -> dict:
    """The apps behind one gateway: wrk's p50 at 1 connection and requests a second at 16, per
    app, the round of median requests a second of `rounds` (the apps take turns, so drift hits
    each alike)."""
    from benchmarks.compare import TOKEN, fresh_gateway, wrk  # noqa: PLC0415  (only needed here)

    runs: dict[str, list[dict]] = {}
    with fresh_gateway("wasmgate-fastapi-bench-") as (base, _server, _data, tmp):
        scripts = {}
        for name, source in APPS.items():
            response = httpx.post(f"{base}/v1/apis", json={"name": f"echo-{name}", "source": source},
                                  headers={"Authorization": f"Bearer {TOKEN}"}, timeout=900)
            response.raise_for_status()
            api = response.json()
            script = tmp / f"{name}.lua"
            script.write_text(f'wrk.method = "POST"\nwrk.body = \'{BODY.decode()}\'\n'
                              f'wrk.headers["Content-Type"] = "application/json"\n'
                              f'wrk.headers["X-API-Key"] = "{api["api_key"]}"\n')
            url = f"{base}{api['endpoint']}/echo"
            answer = httpx.post(url, content=BODY, headers={"Content-Type": "application/json", "X-API-Key": api["api_key"]})
            assert answer.status_code == 200 and answer.json() == json.loads(BODY), (name, answer.text)
            wrk(url, script, 1, 1)  # warm-up, not counted
            scripts[name] = (url, script)
        for _round in range(rounds):
            for connections in (1, 16):
                for name, (url, script) in scripts.items():
                    row = wrk(url, script, connections, seconds)
                    key = f"{name}, {connections} connection{'s' if connections > 1 else ''}"
                    runs.setdefault(key, []).append(row)
                    print(f"  {key:<26} {row['rps']:8.1f} req/s  p50 {row['p50_ms']:6.2f} ms  non-2xx {row['non_2xx']}",
                          flush=True)
    rows = {key: sorted(taken, key=lambda row: row["rps"])[len(taken) // 2] for key, taken in runs.items()}
    ratios = {
        "p50 at 1 connection": round(rows["fastapi, 1 connection"]["p50_ms"] / rows["sdk, 1 connection"]["p50_ms"], 2),
        "CPU a request at 16 connections": round(rows["sdk, 16 connections"]["rps"] / rows["fastapi, 16 connections"]["rps"], 2),
    }
    return {"rows": rows, "ratio": ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="calls per app and way of making the instance")
    parser.add_argument("--resident-mb", default="16,32",
                        help="instance slot memory kept resident (WASMGATE_POOL_RESIDENT_MB) to compare, comma-separated")
    parser.add_argument("--seconds", type=int, default=5, help="wrk's time per app and round over HTTP (0: skip)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fastapi.json")
    args = parser.parse_args()
    residents = [int(mb) for mb in args.resident_mb.split(",")]

    store = BundleStore(CACHE / "store")
    request = SandboxRequest("POST", "/echo", headers=[("content-type", "application/json")], body=BODY)
    limits = Limits()
    depth = 2  # pre-made instances of each app ready
    runtimes = {mb: (Runtime(store, pool=PoolBudget(ready=len(APPS) * depth, depth=depth, busy_s=0), resident_bytes=mb << 20),
                     Runtime(store, pool=PoolBudget(ready=0, fillers=0), resident_bytes=mb << 20)) for mb in residents}
    times: dict[str, list[float]] = {f"{app}, {way}, {mb} MiB": [] for mb in residents for app in APPS for way in WAYS}
    fuel: dict[str, int] = {}
    try:
        _pooled, inline = runtimes[residents[0]]
        bundles = {name: _bundle(store, inline, name, APPS[name]) for name in APPS}
        for pooled, _inline in runtimes.values():
            for name, bundle in bundles.items():  # the same answer from both, and both hot in every pool
                answer = pooled.invoke(bundle, request, limits).response
                assert answer.status == 200 and json.loads(answer.body) == json.loads(BODY), (name, answer)
        for _ in range(args.requests):  # interleaved, so that drift hits every row alike
            for mb, (pooled, inline) in runtimes.items():
                for app, bundle in bundles.items():
                    _settled(pooled, len(APPS) * depth)
                    started = time.perf_counter()
                    fuel[app] = pooled.invoke(bundle, request, limits).report.fuel_used
                    times[f"{app}, pre-made, {mb} MiB"].append((time.perf_counter() - started) * 1000)
                    started = time.perf_counter()
                    inline.invoke(bundle, request, limits)
                    times[f"{app}, inline-made, {mb} MiB"].append((time.perf_counter() - started) * 1000)
                    started = time.perf_counter()
                    instance = inline._make_instance(bundle)
                    instance.run(request, limits)
                    instance.close()
                    times[f"{app}, whole life, {mb} MiB"].append((time.perf_counter() - started) * 1000)
    finally:
        for runtime_pair in runtimes.values():
            for runtime in runtime_pair:
                runtime.close()

    rows = {name: {"p50_ms": round(pct(t, .5), 3), "p99_ms": round(pct(t, .99), 3)} for name, t in times.items()}
    ratios = {f"{way}, {mb} MiB": round(rows[f"fastapi, {way}, {mb} MiB"]["p50_ms"] / rows[f"sdk, {way}, {mb} MiB"]["p50_ms"], 2)
              for mb in residents for way in WAYS}
    floor = {f"{way}, {mb} MiB": round(rows[f"starlette, {way}, {mb} MiB"]["p50_ms"] / rows[f"sdk, {way}, {mb} MiB"]["p50_ms"], 2)
             for mb in residents for way in WAYS}
    print("| app, instance, slot memory kept resident | p50 ms | p99 ms |\n| --- | --- | --- |")
    for name, row in rows.items():
        print(f"| {name} | {row['p50_ms']:.3f} | {row['p99_ms']:.3f} |")
    print(f"fuel per call: SDK {fuel['sdk']:,}, FastAPI {fuel['fastapi']:,}, Starlette alone {fuel['starlette']:,}")
    for name, ratio in ratios.items():
        print(f"FastAPI / SDK p50, {name}: {ratio:.2f}x (target <= 1.5x; Starlette alone, "
              f"which FastAPI runs on: {floor[name]:.2f}x)")
    http = over_http(args.seconds) if args.seconds > 0 else None
    if http is not None:
        for name, ratio in http["ratio"].items():
            print(f"over HTTP, FastAPI / SDK, {name}: {ratio:.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows,
                                    "fuel": fuel, "ratio_p50": ratios,
                                    "starlette_ratio_p50": floor, "over_http": http}, indent=2) + "\n")


if __name__ == "__main__":
    main()
