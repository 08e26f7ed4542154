"""What builds leave in the process that asks for them: in that process, or in a build process.

    .venv/bin/python benchmarks/bench_build_memory.py [--builds 20] [--out benchmarks/results/build_memory.json]

Runs `--builds` cold builds of distinct SDK apps (a fresh store, so none is cached) each way,
in this one run: first each in a build process of its own (`builder.build_process`, what the
gateway does), then each inside this process (`builder.build.build`, what the gateway did).
Either way this process then loads the bundle into its runtime and drops it, as a gateway
loads a new version. Prints, for each way, this process's RSS growth per build (after the
first, which pays one-time imports) and the seconds a build took, with the ratios.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from builder.build import build  # noqa: E402
from builder.build_process import BuildOrder, build_in_process  # noqa: E402
from runtime import BundleStore, PoolBudget, Runtime  # noqa: E402

APP = '''from wasmgate import App

app = App()


@app.post("/echo")
def echo(body: dict) -> dict:
    return {{"echo": body, "build": "{nonce}"}}
'''


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def run_builds(way: str, count: int, store: BundleStore, runtime: Runtime, sources: Path) -> dict:
    rss, seconds = [rss_mb()], []
    for _ in range(count):
        source = sources / uuid.uuid4().hex / "app.py"
        source.parent.mkdir()
        source.write_text(APP.format(nonce=uuid.uuid4().hex))
        started = time.perf_counter()
        if way == "build process":
            bundle = store.get(build_in_process(BuildOrder(source=str(source), store_dir=str(store.root))).bundle_hash)
        else:
            bundle = build(source, store, runtime=runtime).bundle
        seconds.append(time.perf_counter() - started)
        runtime.load(bundle)
        runtime.forget(bundle.hash)
        rss.append(rss_mb())
        print(f"  {way}: build {len(seconds)} in {seconds[-1]:.1f} s, RSS {rss[-1]:.0f} MB", flush=True)
    growth = (rss[-1] - rss[1]) / max(1, count - 1)
    return {"rss_mb": [round(r, 1) for r in rss], "growth_mb_per_build": round(growth, 2),
            "seconds_p50": round(statistics.median(seconds), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--builds", type=int, default=20, help="cold builds each way (at least 2)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "build_memory.json")
    args = parser.parse_args()
    if args.builds < 2:
        parser.error("--builds must be at least 2")
    with tempfile.TemporaryDirectory() as tmp:
        store = BundleStore(Path(tmp) / "store")
        runtime = Runtime(store, pool=PoolBudget(ready=0, fillers=0), concurrency=1)
        sources = Path(tmp) / "sources"
        sources.mkdir()
        results = {way: run_builds(way, args.builds, store, runtime, sources) for way in ("build process", "in process")}
        runtime.close()
    inside, outside = results["in process"], results["build process"]
    results["machine"] = f"{platform.node()} ({platform.machine()}, {platform.processor() or 'cpu'})"
    results["run_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"\n{'way':<15} {'RSS growth a build':>20} {'build p50':>10}")
    for way in ("build process", "in process"):
        print(f"{way:<15} {results[way]['growth_mb_per_build']:>17.2f} MB {results[way]['seconds_p50']:>8.2f} s")
    print(f"a build process costs {outside['seconds_p50'] / inside['seconds_p50']:.2f}x the time of a build in"
          f" process; it leaves {outside['growth_mb_per_build']:.2f} MB a build against {inside['growth_mb_per_build']:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
