"""What an unchanged FastAPI app costs per request against the same echo in wasmgate's SDK.

    .venv/bin/python benchmarks/bench_fastapi.py [--requests 300] [--out benchmarks/results/fastapi.json]

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
the fuel each call burns. Builds are cached in benchmarks/.cache.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="calls per app and way of making the instance")
    parser.add_argument("--resident-mb", default="16,32",
                        help="instance slot memory kept resident (WASMGATE_POOL_RESIDENT_MB) to compare, comma-separated")
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
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows,
                                    "fuel": fuel, "ratio_p50": ratios,
                                    "starlette_ratio_p50": floor}, indent=2) + "\n")


if __name__ == "__main__":
    main()
