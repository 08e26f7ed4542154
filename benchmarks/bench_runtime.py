"""Per-invocation cost of the sandbox, against baselines measured in the same run.

    .venv/bin/python benchmarks/bench_runtime.py [--store DIR] [-n 300]

Prints, for a JSON echo and for a 10 MB upload: instantiate / call / total (p50, p99) in
the sandbox, the same handler run natively (wasmgate.testing, no sandbox) as the baseline,
and their ratio. Then: throughput with 1 vs 2 threads, and wasmtime's pooling allocator
(configured through the C API) against the default allocator the runtime uses.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import wasmtime  # noqa: E402
import wasmtime._bindings as capi  # noqa: E402

from builder.build import build  # noqa: E402
from runtime import BundleStore, Limits, Runtime, SandboxRequest, Upload  # noqa: E402
from runtime.engine import Engine  # noqa: E402

APP = '''
from wasmgate import App, UploadFile
app = App()

@app.post("/echo")
def echo(body: dict):
    return body

@app.post("/upload")
def upload(file: UploadFile, label: str):
    data = file.read()
    return {"size": len(data), "label": label}
'''
LIMITS = Limits(fuel=20_000_000_000, timeout_ms=30_000, memory_bytes=256 << 20)
ECHO = SandboxRequest("POST", "/echo", headers=[("content-type", "application/json")], body=b'{"values": [1, 2, 3], "name": "bench"}')


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def summary(label: str, rows: list[tuple[float, float, float]]) -> float:
    inst, call, total = zip(*rows)
    print(f"{label:<34} instantiate p50 {pct(inst, .5):6.2f} ms | call p50 {pct(call, .5):7.2f} ms | "
          f"total p50 {pct(total, .5):7.2f} p99 {pct(total, .99):7.2f} ms")
    return pct(total, 0.5)


def sandbox_runs(runtime: Runtime, bundle, request_factory, n: int) -> list[tuple[float, float, float]]:
    rows = []
    for _ in range(n):
        request = request_factory()
        started = time.perf_counter()
        report = runtime.invoke(bundle, request, LIMITS).report
        rows.append((report.instantiate_ms, report.call_ms, (time.perf_counter() - started) * 1000))
    return rows


def native_runs(action, n: int) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return times


def throughput(runtime: Runtime, bundle, threads: int, seconds: float = 3.0) -> float:
    count = [0] * threads
    stop = time.monotonic() + seconds

    def worker(i: int) -> None:
        while time.monotonic() < stop:
            runtime.invoke(bundle, ECHO, LIMITS)
            count[i] += 1

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(count) / seconds


def pooling_engine() -> Engine:
    """An Engine like runtime.engine's, but with the pooling instance allocator."""
    engine = Engine.__new__(Engine)
    config = wasmtime.Config()
    config.consume_fuel = True
    config.epoch_interruption = True
    config.cranelift_opt_level = "speed"
    pool = capi.wasmtime_pooling_allocation_config_new()
    for setter, value in [
        ("total_component_instances", 64), ("total_memories", 256), ("total_tables", 256),
        ("total_core_instances", 2048), ("max_memory_size", 512 << 20), ("max_core_instance_size", 1 << 20),
        ("max_component_instance_size", 1 << 20), ("max_memories_per_component", 32),
        ("max_tables_per_component", 32), ("max_core_instances_per_component", 64), ("table_elements", 200_000),
    ]:
        getattr(capi, f"wasmtime_pooling_allocation_config_{setter}_set")(pool, value)
    capi.wasmtime_pooling_allocation_strategy_set(config.ptr(), pool)
    engine.wasm = wasmtime.Engine(config)
    engine.fingerprint = Engine().fingerprint + "-pooling"
    engine._stopped = threading.Event()
    engine._ticker = threading.Thread(target=engine._tick, daemon=True)
    engine._ticker.start()
    return engine


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", type=Path, default=Path(tempfile.gettempdir()) / "wasmgate-bench-store")
    parser.add_argument("-n", type=int, default=300)
    args = parser.parse_args()

    store = BundleStore(args.store)
    runtime = Runtime(store)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "bench_app.py"
        source.write_text(APP)
        bundle = build(source, store, runtime=runtime, log=lambda line: print("  build:", line)).bundle

        namespace: dict = {}
        exec(compile(APP, "bench_app", "exec"), namespace)  # the same handlers, natively
        from wasmgate.testing import TestClient

        client = TestClient(namespace["app"])
        for _ in range(20):
            runtime.invoke(bundle, ECHO, LIMITS)

        print(f"\nJSON echo, {args.n} invocations (fresh instance each)")
        sandbox_p50 = summary("  sandbox", sandbox_runs(runtime, bundle, lambda: ECHO, args.n))
        native = native_runs(lambda: client.post("/echo", json={"values": [1, 2, 3], "name": "bench"}), args.n)
        print(f"  {'native SDK dispatch (baseline)':<32} total p50 {pct(native, .5):7.3f} ms")
        print(f"  ratio sandbox / native: {sandbox_p50 / pct(native, .5):.0f}x")

        upload_dir = Path(tmp) / "uploads"
        upload_dir.mkdir()
        blob = os.urandom(10 << 20)
        (upload_dir / "0").write_bytes(blob)
        upload = SandboxRequest("POST", "/upload", headers=[("content-type", "multipart/form-data")],
                                form=[("label", "x")], files=[Upload("file", "blob.bin", "application/octet-stream", upload_dir / "0", len(blob))],
                                upload_dir=upload_dir)
        print("\n10 MB upload (read-only preopened request directory), 20 invocations")
        sandbox_p50 = summary("  sandbox", sandbox_runs(runtime, bundle, lambda: upload, 20))
        native = native_runs(lambda: client.post("/upload", data={"label": "x"}, files={"file": ("blob.bin", (upload_dir / "0").read_bytes(), "application/octet-stream")}), 20)
        print(f"  {'native SDK dispatch (baseline)':<32} total p50 {pct(native, .5):7.3f} ms")
        print(f"  ratio sandbox / native: {sandbox_p50 / pct(native, .5):.1f}x")

        raw = SandboxRequest("POST", "/echo", headers=[("content-type", "application/json")], body=b'{"blob": "' + b"x" * (10 << 20) + b'"}')
        print("\n10 MB JSON body on stdin and back as the response string, 10 invocations")
        summary("  sandbox", sandbox_runs(runtime, bundle, lambda: raw, 10))

        print("\nThroughput, JSON echo, 3 s each")
        one = throughput(runtime, bundle, 1)
        two = throughput(runtime, bundle, 2)
        print(f"  1 thread {one:6.0f} req/s | 2 threads {two:6.0f} req/s | ratio {two / one:.2f}x (cores: {os.cpu_count()})")

        print("\nInstance allocator: default vs pooling (C API), JSON echo")
        default_rows = sandbox_runs(runtime, bundle, lambda: ECHO, args.n)
        pooled_runtime = Runtime(store, pooling_engine())
        for _ in range(20):
            pooled_runtime.invoke(bundle, ECHO, LIMITS)
        pooled_rows = sandbox_runs(pooled_runtime, bundle, lambda: ECHO, args.n)
        d = summary("  default allocator", default_rows)
        p = summary("  pooling allocator", pooled_rows)
        print(f"  ratio pooling / default (total p50): {p / d:.2f}")


if __name__ == "__main__":
    main()
