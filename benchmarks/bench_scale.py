"""Many APIs on one node: the gateway's memory, the store's disk, start-up and a rebuild.

    .venv/bin/python benchmarks/bench_scale.py [--apis 1,10,100] [--prebuild] [--out benchmarks/results/scale.json]

Deploys distinct SDK APIs (built two at a time, each in a build process; bundles are cached in
benchmarks/.cache/store between runs, so only a cold run pays ~3 s a build, after one
~20 s build of the base they share) on one `wasmgate serve` (its default processes). After
each step: the gateway's RSS and PSS (summed over its processes), the components they keep
loaded, and the disk the deployed APIs take: each one's own (its bundle and its precompiled
file's delta), the precompiled files kept whole (a cache within WASMGATE_COMPILED_CACHE_MB,
projected to 1,000 APIs at most that budget), and what they share once (the layers and
their precompiled code, the bases they were built from, the references their deltas are
against, the stdlib).
Then 10,000 requests, four in five to the first ten APIs (hot: they keep instances ready)
and the rest round-robin over all of them (cold), and the same figures.
Then a code-only change of one API, timed (its dependencies unchanged); with the gateway
stopped, the load of an API's component in a new runtime with its precompiled file kept and
trimmed (restored from its delta); and a restart of the gateway: how long until it is
ready, and the first request of an API not called since.
Prints the targets of the thousand-APIs issue with what this run measured.

`--prebuild` first fills the cache with every bundle the run will deploy (two build
processes at a time, no gateway), so that the measured run deploys from a warm cache; with
`--prebuild-only` that is all it does (a cold cache of 1,000 APIs takes about an hour here).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from builder.build_process import BuildOrder, build_in_process  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from runtime import BundleStore, PoolBudget, Runtime  # noqa: E402
from compare import (  # noqa: E402
    CACHE, ROOT, TOKEN, WASMGATE_APP, _memory, data_dir_with_cached_store, deploy, free_port, gateway_env, post_echo,
    running, serve_command,
)

REQUESTS = 10_000
HOT = 10
COMPILED_CACHE_MB = int(os.environ.get("WASMGATE_COMPILED_CACHE_MB", Settings.model_fields["compiled_cache_mb"].default))


def api_counts(text: str) -> list[int]:
    """`--apis`: comma-separated positive counts (an argparse type: bad input is a usage error)."""
    try:
        counts = [int(n) for n in text.split(",") if n.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected positive counts separated by commas, e.g. 1,100,1000, not {text!r}")
    return counts


def prebuild(count: int, tmp: Path) -> None:
    """Build, into the benchmark's cached store, the bundles of the first `count` APIs that a
    run deploys (API n runs `WASMGATE_APP` with version n + 1, as `app.py`, like a deploy)."""
    store = CACHE / "store"
    store.mkdir(parents=True, exist_ok=True)
    started, done, built = time.monotonic(), [0], [0]
    lock = threading.Lock()

    def one(n: int) -> None:
        source = tmp / f"prebuild-{n}" / "app.py"
        source.parent.mkdir(parents=True)
        source.write_text(WASMGATE_APP.format(version=n + 1))
        cached = build_in_process(BuildOrder(source=str(source), store_dir=str(store))).cached
        with lock:
            done[0], built[0] = done[0] + 1, built[0] + (not cached)
            if done[0] % 50 == 0 or done[0] == count:
                print(f"  prebuild: {done[0]} of {count} APIs ready ({built[0]} built,"
                      f" {time.monotonic() - started:.0f} s)", flush=True)

    with ThreadPoolExecutor(2) as builds:
        list(builds.map(one, range(count)))


def bench_scale(tmp: Path, counts: list[int], results: dict) -> None:
    """Writes results["scale"]: the rows, the rebuild, the restart."""
    scale: dict = results.setdefault("scale", {})
    data = data_dir_with_cached_store(tmp / "scale")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**gateway_env(data), "WASMGATE_BUILD_WORKERS": "2"}
    rows: list[dict] = []
    apis: list[dict] = []
    with running(serve_command(port), base + "/readyz", env, tmp / "scale.log") as server:
        rows.append({"apis": 0, **_memory(server.pid, base), **_disk(data / "store", [])})
        for count in sorted(counts):
            started = time.monotonic()
            with ThreadPoolExecutor(2) as builds:
                apis += builds.map(lambda n: deploy(base, f"api-{n}", n + 1), range(len(apis), count))
            rows.append({"apis": count, "deploy_s": round(time.monotonic() - started, 1),
                         **_memory(server.pid, base), **_disk(data / "store", apis)})
            _print(rows[-1])
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for n in range(REQUESTS if apis else 0):
            target = apis[n % min(HOT, len(apis))] if n % 5 else apis[(n // 5) % len(apis)]
            post_echo(port, target, connection)
        connection.close()
        rows.append({"apis": len(apis), "after_requests": REQUESTS, **_memory(server.pid, base),
                     **_disk(data / "store", apis)})
        _print(rows[-1])
        scale["rebuild_s"] = _code_change(base, apis[0])
        print(f"  a code-only change of one API: built and active in {scale['rebuild_s']} s", flush=True)
    scale["rows"] = rows
    scale["compiled_cache_mb"] = COMPILED_CACHE_MB
    scale.update(_load_times(data / "store", apis[-1]))
    print(f"  loading an API's component in a new process: {scale['load_kept_ms']} ms with its precompiled file"
          f" kept, {scale['load_restored_ms']} ms restored from its delta (trimmed)", flush=True)
    started = time.monotonic()
    with running(serve_command(port), base + "/readyz", env, tmp / "scale.log") as server:
        scale["ready_after_restart_s"] = round(time.monotonic() - started, 2)
        time.sleep(1)  # every process up, not only the first to answer /readyz
        scale["first_request_after_restart_ms"] = round(post_echo(port, apis[-1]), 2)
        trimmed = [api for api in apis if not _compiled_kept(data / "store", api)]
        if trimmed:  # never called since the restart, its precompiled file restored by this request
            scale["first_request_trimmed_ms"] = round(post_echo(port, trimmed[len(trimmed) // 2]), 2)
        rows.append({"apis": len(apis), "after_restart": True, **_memory(server.pid, base),
                     **_disk(data / "store", apis)})
        _print(rows[-1])
    print(f"  restart: ready in {scale['ready_after_restart_s']} s; the first request of an API not called"
          f" since: {scale['first_request_after_restart_ms']} ms; of one whose precompiled file was trimmed:"
          f" {scale.get('first_request_trimmed_ms', '-')} ms", flush=True)


def _compiled_kept(store: Path, api: dict) -> bool:
    """Whether `api`'s precompiled file is on disk (not trimmed past WASMGATE_COMPILED_CACHE_MB)."""
    manifest = json.loads((store / "bundles" / api["bundle_hash"] / "manifest.json").read_text())
    return any((store / "compiled").glob(f"{manifest['component_sha256']}-*.cwasm"))


def _load_times(store: Path, api: dict, rounds: int = 5) -> dict:
    """p50 ms to load `api`'s component in a runtime of its own, as a gateway process does on an
    API's first call (files checked, precompiled file mapped), with its precompiled file kept
    and with it trimmed (restored from its delta), alternating; the gateway is stopped."""
    bundles = BundleStore(store)
    bundle = bundles.get(api["bundle_hash"])
    times: dict[str, list[float]] = {"load_kept_ms": [], "load_restored_ms": []}
    for _round in range(rounds):
        for key in times:
            runtime = Runtime(bundles, pool=PoolBudget(ready=0, fillers=0), concurrency=1)
            compiled = bundles.compiled_path(bundle, runtime.engine.fingerprint)
            if key == "load_restored_ms":
                compiled.unlink()
            started = time.perf_counter()
            runtime.load(bundle)
            times[key].append((time.perf_counter() - started) * 1e3)
            runtime.close()
    return {key: round(statistics.median(values), 1) for key, values in times.items()}


def _code_change(base: str, api: dict) -> float:
    """Seconds to deploy a new version of `api` whose code changed and whose dependencies did not."""
    source = WASMGATE_APP.format(version=f"'changed at {time.time()}'")
    started = time.monotonic()
    response = httpx.put(f"{base}/v1/apis/{api['id']}", json={"source": source},
                         headers={"Authorization": f"Bearer {TOKEN}"}, timeout=900)
    response.raise_for_status()
    return round(time.monotonic() - started, 2)


def _disk(store: Path, apis: list[dict]) -> dict:
    """MB on disk for the deployed APIs: their own files (bundle, precompiled file's delta), the
    precompiled files kept whole (a cache within WASMGATE_COMPILED_CACHE_MB), and what they
    share (counted once)."""
    store = store.resolve()
    own = cached = shared = 0
    layers: set[str] = set()
    bases: set[str] = set()
    references: set[str] = set()
    for api in apis:
        bundle = store / "bundles" / api["bundle_hash"]
        manifest = json.loads((bundle / "manifest.json").read_text())
        deltas = list((store / "compiled").glob(f"{manifest['component_sha256']}-*.cwasm.delta"))
        own += _size(bundle.rglob("*")) + _size(deltas)
        cached += _size((store / "compiled").glob(f"{manifest['component_sha256']}-*.cwasm"))
        layers.update(manifest.get("layers", []))
        bases.add(manifest.get("base"))
        references.add(manifest.get("component_reference"))
        references.update(delta.read_bytes()[:64].decode() for delta in deltas)
    for layer in layers:
        shared += _size([store / "layers" / f"{layer}.wasm", *(store / "compiled").glob(f"{layer}-*.cwasm")])
    shared += sum(_size((store / "bases" / base).rglob("*")) for base in bases if base)  # builder.bases
    shared += _size(store / "references" / name for name in references if name)  # runtime.references
    shared += sum(_size(stdlib.rglob("*")) for stdlib in store.glob("stdlib-*")) if apis else 0
    return {"disk_mb": round((own + cached + shared) / 1e6, 1), "disk_per_api_mb": round(own / 1e6 / max(1, len(apis)), 2),
            "disk_cached_mb": round(cached / 1e6, 1), "disk_shared_mb": round(shared / 1e6, 1)}


def _size(paths) -> int:  # noqa: ANN001
    return sum(path.stat().st_size for path in paths if path.is_file())


def _print(row: dict) -> None:
    after = " after 10,000 requests" if "after_requests" in row else " after a restart" if "after_restart" in row else ""
    print(f"  {row['apis']} APIs{after}: RSS {row['rss_mb']} MB, PSS {row['pss_mb']} MB, {row['components_loaded']}"
          f" components loaded; disk {row['disk_mb']} MB ({row['disk_per_api_mb']} MB an API +"
          f" {row.get('disk_cached_mb', 0)} MB precompiled files kept whole + {row['disk_shared_mb']} MB shared)" + (f"; deployed in {row['deploy_s']} s" if "deploy_s" in row else ""), flush=True)


def table(results: dict) -> str:
    lines = ["| deployed APIs | RSS MB | PSS MB | components loaded | disk MB (an API / kept whole / shared) |",
             "|---|---|---|---|---|"]
    for row in results["scale"]["rows"]:
        when = ", after 10,000 requests" if "after_requests" in row else ", after a restart" if "after_restart" in row else ""
        lines.append(f"| {row['apis']}{when} | {row['rss_mb']:.0f} | {row['pss_mb']:.0f} | {row['components_loaded']} |"
                     f" {row['disk_mb']:.0f} ({row['disk_per_api_mb']} / {row.get('disk_cached_mb', '-')} /"
                     f" {row['disk_shared_mb']}) |")
    return "\n".join(lines)


def targets(results: dict) -> str:
    scale = results["scale"]
    most = max((r for r in scale["rows"] if "after_restart" not in r), key=lambda r: (r["apis"], "after_requests" in r))
    per_api, shared = most["disk_per_api_mb"], most["disk_shared_mb"]
    # precompiled files kept whole: each API's, up to the budget (a run before the budget: all)
    cached_per_api = most.get("disk_cached_mb", 0) / max(1, most["apis"])
    budget = scale.get("compiled_cache_mb") or float("inf")
    at_1000 = (per_api * 1000 + shared + min(cached_per_api * 1000, budget)) / 1000
    lines = ["| target | measured | |", "|---|---|---|"]
    checks = [
        ("gateway RSS <= 2 GB with 1,000 APIs after 10,000 requests",
         f"{most['rss_mb']:.0f} MB (PSS {most['pss_mb']:.0f}) with {most['apis']} APIs", most["rss_mb"] <= 2048,
         most["apis"] >= 1000),
        ("disk <= 5 GB for 1,000 APIs", f"{most['disk_mb']:.0f} MB for {most['apis']} ({per_api} MB an API + "
         f"{shared} MB shared + precompiled files kept whole, at most {scale.get('compiled_cache_mb', '-')} MB):"
         f" {at_1000:.1f} GB at 1,000", at_1000 <= 5, True),
        ("first request of a never-called API after a restart <= 20 ms",
         f"{scale['first_request_after_restart_ms']:.1f} ms (ready {scale['ready_after_restart_s']} s after the"
         " restart)", scale["first_request_after_restart_ms"] <= 20, True),
        ("... of one whose precompiled file was trimmed (restored from its delta)",
         f"{scale.get('first_request_trimmed_ms', '-')} ms; its load alone {scale.get('load_restored_ms', '-')} ms"
         f" (a kept one's {scale.get('load_kept_ms', '-')} ms)", scale.get("first_request_trimmed_ms", 0) <= 20,
         "first_request_trimmed_ms" in scale),
        ("a code-only change rebuilds in <= 5 s", f"{scale['rebuild_s']} s", scale["rebuild_s"] <= 5, True),
    ]
    for target, measured, met, measured_here in checks:
        verdict = ("met" if met else "not met") if measured_here else "not measured at this count"
        lines.append(f"| {target} | {measured} | {verdict} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--apis", type=api_counts, default="1,10,100", help="API counts to deploy, e.g. 1,100,1000")
    parser.add_argument("--prebuild", action="store_true", help="fill the cache with every bundle first")
    parser.add_argument("--prebuild-only", action="store_true", help="only fill the cache, measure nothing")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scale.json")
    args = parser.parse_args()
    if args.prebuild or args.prebuild_only:
        with tempfile.TemporaryDirectory(prefix="wasmgate-prebuild-") as tmp:
            prebuild(max(args.apis), Path(tmp))
        if args.prebuild_only:
            return
    results: dict = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                 "python": platform.python_version(),
                                 "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}}
    with tempfile.TemporaryDirectory(prefix="wasmgate-scale-") as tmp:
        bench_scale(Path(tmp), args.apis, results)
    results["scale"]["table"], results["scale"]["targets"] = table(results), targets(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print("\n" + results["scale"]["table"] + "\n\n" + results["scale"]["targets"] + f"\n\nwritten to {args.out}")


if __name__ == "__main__":
    main()
