"""What a fresh instance's memory slot costs to reset, with and without its image mapped in first.

    .venv/bin/python benchmarks/bench_slot_reset.py [--cycles 300] [--out benchmarks/results/slot_reset.json]

For the SDK echo and the FastAPI echo of `bench_fastapi.py`, two runtimes in one process, one
whose engine maps a slot's whole memory image in before the slot's first reset
(`EngineConfig.map_in_slot_images`, runtime.slot_images) and one whose engine does not, each
run the same cycles interleaved, in a new order each cycle (make, warm, call, close: a
pre-made instance's whole life), so drift hits both alike. Printed per app and engine: the CPU
of make, call and close (thread time, p50), and the private pages a slot holds after its
instance is closed (what every later reset of that slot copies again), read from
/proc/self/pagemap; then the ratios.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_fastapi import APPS, BODY, CACHE, _bundle, pct  # noqa: E402
from runtime import BundleStore, Limits, PoolBudget, Runtime, SandboxRequest  # noqa: E402
from runtime.engine import Engine, EngineConfig  # noqa: E402
from runtime.slot_images import image_mappings, private_pages  # noqa: E402

STEPS = ("make", "call", "close")
# Mapping in takes every image mapping of the process that is new since the last look, the
# other engine's too; the first instance of each app runs on "mapped in" first, so the other
# engine's slot for it does not exist yet, and after its first reset that slot has no page
# left to map in.
ENGINES = {"mapped in": True, "as touched": False}


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=positive, default=300, help="instances per app and engine")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "slot_reset.json")
    args = parser.parse_args()

    store = BundleStore(CACHE / "store")
    builder = Runtime(store, pool=PoolBudget(ready=0, fillers=0))  # its slots go with it
    try:
        bundles = {app: _bundle(store, builder, app, source) for app, source in APPS.items()}
    finally:
        builder.close()
    runtimes = {
        name: Runtime(store, engine=Engine(EngineConfig(slots=8, map_in_slot_images=mapped)),
                      pool=PoolBudget(ready=0, fillers=0))
        for name, mapped in ENGINES.items()
    }
    if runtimes["mapped in"].engine.slot_images is None:
        raise SystemExit("this wasmtime build or kernel does not reset slots by their dirty pages: nothing to compare")
    request = SandboxRequest("POST", "/echo", headers=[("content-type", "application/json")], body=BODY)
    limits = Limits()
    cpu = {f"{app}, {engine}, {step}": [] for app in APPS for engine in ENGINES for step in STEPS}
    pages: dict[str, int] = {}
    try:
        for cycle in range(args.cycles):
            for app, bundle in bundles.items():
                order = list(runtimes.items())
                if cycle:  # after the first, in a new order each time: a close's memory traffic
                    random.shuffle(order)  # slows whatever runs next
                for engine, runtime in order:
                    before = set(image_mappings())
                    started = time.thread_time()
                    instance = runtime._make_instance(bundle)
                    made = time.thread_time()
                    slot = sorted(set(image_mappings()) - before) if cycle == 0 else []
                    instance.warm()
                    called = time.thread_time()
                    response, _report = instance.run(request, limits)
                    ran = time.thread_time()
                    instance.close()
                    closed = time.thread_time()
                    assert response.status == 200 and json.loads(response.body) == json.loads(BODY), (app, response)
                    if cycle == 0:  # the slot this app got first, after its first reset
                        pages[f"{app}, {engine}"] = private_pages(slot)
                    for step, seconds in zip(STEPS, (made - started, ran - called, closed - ran)):
                        cpu[f"{app}, {engine}, {step}"].append(seconds * 1000)
    finally:
        for runtime in runtimes.values():
            runtime.close()

    rows = {name: {"p50_ms": round(pct(t, .5), 3), "p99_ms": round(pct(t, .99), 3)} for name, t in cpu.items()}
    print("| app, slot image, step (CPU) | p50 ms | p99 ms |\n| --- | --- | --- |")
    for name, row in rows.items():
        print(f"| {name} | {row['p50_ms']:.3f} | {row['p99_ms']:.3f} |")
    ratios = {}
    for app in APPS:
        life = {engine: sum(rows[f"{app}, {engine}, {step}"]["p50_ms"] for step in STEPS) for engine in ENGINES}
        ratios[f"{app}, close"] = round(rows[f"{app}, as touched, close"]["p50_ms"] / rows[f"{app}, mapped in, close"]["p50_ms"], 2)
        ratios[f"{app}, make + call + close"] = round(life["as touched"] / life["mapped in"], 2)
        print(f"{app}: private pages in its slot after a reset: {pages[f'{app}, as touched']} as touched, "
              f"{pages[f'{app}, mapped in']} mapped in; close {ratios[f'{app}, close']:.2f}x, "
              f"make + call + close {ratios[f'{app}, make + call + close']:.2f}x the CPU as touched")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cycles": args.cycles,
        "rows": rows, "private_pages_after_reset": pages, "ratio_as_touched_over_mapped_in": ratios,
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
