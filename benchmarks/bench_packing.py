"""What the store could save by keeping bundles compressed against a reference bundle.

    .venv/bin/python benchmarks/bench_packing.py [--out benchmarks/results/packing.json]

An API's own disk is its component (~15 MB for an SDK app) and that component precompiled
(~19 MB), nearly all of both its pre-initialized heap. Much of one API's heap is another's at
a shifted place, so each file is compressed with zstd using the same file of a reference
bundle (a small app of the same framework) as its dictionary, two ways: fast (what a build
could afford) and level 12 with long-distance matching; plain zstd is shown beside. Each
compressed file is decompressed again and checked equal, timed: what loading a packed
precompiled file would add to the first request of an API (wasmtime maps it uncompressed).
Builds the apps once into benchmarks/.cache/store; prints a table and the projection for
1,000 APIs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import zstandard

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from builder.build import build  # noqa: E402
from runtime import BundleStore, PoolBudget, Runtime  # noqa: E402

CACHE = ROOT / "benchmarks" / ".cache"
FASTAPI_REFERENCE = '''
from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def root():
    return {"ok": True}
'''
SDK_REFERENCE = '''
from wasmgate import App

app = App()


@app.get("/")
def root():
    return {"ok": True}
'''
# (kind, name, source): distinct apps of each framework, each packed against its kind's reference.
APPS = [
    ("sdk", "examples/hello.py", (ROOT / "examples" / "hello.py").read_text()),
    ("sdk", "tests/apps/probe.py", (ROOT / "tests" / "apps" / "probe.py").read_text()),
    ("sdk", "tests/apps/fresh.py", (ROOT / "tests" / "apps" / "fresh.py").read_text()),
    ("fastapi", "tests/apps/fastapi_probe.py", (ROOT / "tests" / "apps" / "fastapi_probe.py").read_text()),
]
WAYS = {
    "fast": zstandard.ZstdCompressionParameters(strategy=1, window_log=26, hash_log=22, chain_log=22, search_log=1,
                                                min_match=6),
    "level 12": zstandard.ZstdCompressionParameters.from_level(12, window_log=26, enable_ldm=True, ldm_min_match=64),
}


def _build(store: BundleStore, runtime: Runtime, name: str, source: str) -> dict[str, bytes]:
    path = CACHE / "packing" / name.replace("/", "-") / "app.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    bundle = build(path, store, runtime=runtime, log=lambda line: None).bundle
    component_sha = bundle.manifest["component_sha256"]
    compiled = [p for p in store.compiled_artifacts(bundle) if p.name.startswith(component_sha)]
    return {"component": store.component_wasm(bundle), "precompiled": compiled[0].read_bytes()}


def _pack(data: bytes, reference: bytes, way: str) -> tuple[int, float, float]:
    """Compressed size, and compression and decompression times in ms (checked equal)."""
    dictionary = zstandard.ZstdCompressionDict(reference, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    started = time.perf_counter()
    packed = zstandard.ZstdCompressor(dict_data=dictionary, compression_params=WAYS[way]).compress(data)
    packing = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    unpacked = zstandard.ZstdDecompressor(dict_data=dictionary, max_window_size=1 << 27).decompress(packed)
    unpacking = (time.perf_counter() - started) * 1000
    assert unpacked == data
    return len(packed), packing, unpacking


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "packing.json")
    args = parser.parse_args()
    store = BundleStore(CACHE / "store")
    runtime = Runtime(store, pool=PoolBudget(ready=0, fillers=0))
    try:
        references = {"sdk": _build(store, runtime, "sdk-reference", SDK_REFERENCE),
                      "fastapi": _build(store, runtime, "fastapi-reference", FASTAPI_REFERENCE)}
        apps = [(kind, name, _build(store, runtime, name, source)) for kind, name, source in APPS]
    finally:
        runtime.close()
    rows = []
    print("| app | file | MB | plain zstd MB | packed MB (fast) | pack / unpack ms (fast) | packed MB (level 12) |"
          " pack / unpack ms (level 12) |\n|---|---|---|---|---|---|---|---|")
    for kind, name, files in apps:
        for file, data in files.items():
            row = {"app": name, "kind": kind, "file": file, "mb": len(data) / 1e6,
                   "plain_mb": len(zstandard.ZstdCompressor(level=3).compress(data)) / 1e6}
            for way in WAYS:
                size, packing, unpacking = _pack(data, references[kind][file], way)
                row[way] = {"mb": size / 1e6, "pack_ms": packing, "unpack_ms": unpacking}
            rows.append(row)
            print(f"| {name} | {file} | {row['mb']:.1f} | {row['plain_mb']:.1f} | {row['fast']['mb']:.2f} |"
                  f" {row['fast']['pack_ms']:.0f} / {row['fast']['unpack_ms']:.0f} | {row['level 12']['mb']:.2f} |"
                  f" {row['level 12']['pack_ms']:.0f} / {row['level 12']['unpack_ms']:.0f} |")
    sdk = [row for row in rows if row["kind"] == "sdk"]
    projection = {}
    for way in ("plain", *WAYS):
        per_api = sum(statistics.median((r["plain_mb"] if way == "plain" else r[way]["mb"])
                                        for r in sdk if r["file"] == file) for file in ("component", "precompiled"))
        projection[way] = per_api
    unpacked = statistics.median(r["mb"] for r in sdk if r["file"] == "precompiled")
    as_is = sum(statistics.median(r["mb"] for r in sdk if r["file"] == file) for file in ("component", "precompiled"))
    print(f"\nan SDK API's own disk as stored today: {as_is:.1f} MB ({as_is:.1f} GB at 1,000)")
    for way, per_api in projection.items():
        print(f"packed ({way}): {per_api:.1f} MB an API ({per_api:.1f} GB at 1,000; {as_is / per_api:.1f}x less)")
    unpack = statistics.median(r["fast"]["unpack_ms"] for r in sdk if r["file"] == "precompiled")
    print(f"an API in use needs its precompiled file unpacked ({unpacked:.1f} MB): {unpack:.0f} ms to decompress it")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows,
                                    "per_api_mb": {"as stored": as_is, **projection},
                                    "unpack_precompiled_ms": unpack}, indent=2) + "\n")


if __name__ == "__main__":
    main()
