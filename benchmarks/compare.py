"""One run, side by side: wasmgate against the designs it replaces, and what isolation costs.

    apt-get install -y wrk
    .venv/bin/python benchmarks/compare.py [--seconds 5] [--apis 1,10] [--touch-memory-gb 16] [--out benchmarks/results/latest.json]

Everything below runs in this one process's run, on this machine, so the ratios compare like
with like (timings on a shared VM vary up to 40% between runs, in spells of minutes):

- over HTTP, with wrk at 1, 16 and 64 connections, a JSON echo (`{"a": 1, "b": [1, 2, 3]}`) and
  a 10 MB multipart upload (size and sha256 returned), against: wasmgate's gateway (a fresh
  sandbox per request); the replaced design (exec() + TestClient); a fresh `python -I -S` per
  request; a fresh pyeryx sandbox and a capsule-run sandbox per request (in a Python 3.12 venv
  made under the cache dir; skipped, saying why, when that cannot be had); the HTTP floor
  (uvicorn + FastAPI answering directly). Each baseline is in benchmarks/baselines/. All of
  them are up at once and take turns (each waiting for the one before to be idle): the echo
  at each concurrency in 3 rounds, every system once a round, so that a spell of the VM falls
  on all of them alike; the upload in one turn each;
- without HTTP: wasmgate's runtime on the echo with a pre-made instance, an inline-made one,
  and a reused one (no isolation: the floor a pool is compared with), served through the
  same request path as a fresh instance's call (limits, logs, report, response checks); and
  the upload's share no gateway can take off: the sandbox alone reading and hashing the 10 MB
  (beside the host hashing it natively), which with the HTTP floor's own upload gives the
  upload's floor in the same run;
- the first request of a never-called API after a restart; memory per pre-made and per used
  instance; gateway RSS and the store's disk with N deployed APIs (`--apis`) and after
  requests spread over them, a code-only rebuild, a restart (benchmarks/bench_scale.py).

Prints one table and writes all of it as JSON. Builds are cached in benchmarks/.cache, so a
second run skips them.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import platform
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from builder.build import build  # noqa: E402
from runtime import BundleStore, Limits, PoolBudget, Runtime, SandboxRequest, Upload  # noqa: E402
from runtime.engine import Engine, EngineConfig  # noqa: E402
from runtime.reused_call import serve_again  # noqa: E402

CACHE = ROOT / "benchmarks" / ".cache"
TOKEN = "bench-admin-token"
KEY = "bench-key"  # what the baselines accept (benchmarks/baselines/common.py)
ECHO_BODY = b'{"a": 1, "b": [1, 2, 3]}'
UPLOAD_MB = 10
CONNECTIONS = (1, 16, 64)
ROUNDS = 3  # turns each system takes at each workload and concurrency (measure_interleaved)
IDLE_S = 0.002  # the pause before each runtime call (see _at_rest)
UPLOAD_CALLS = 15  # the upload's calls in the runtime alone (see _sandbox_upload)
# The runtime's rows. A reused instance is served through the same request path as a fresh
# one's call (limits, logs, report, response checks): only the instance's freshness differs.
RUNTIME_ROWS = ("pre-made", "inline-made", "reused (no isolation)")
WASMGATE_APP = '''
import hashlib
from wasmgate import App, UploadFile

app = App()
VERSION = {version}


@app.post("/echo")
def echo(body: dict):
    return body


@app.post("/upload")
def upload(file: UploadFile):
    data = file.read()
    return {{"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}}
'''
PEERS = {"pyeryx": "pyeryx_gateway", "capsule-run": "capsule_gateway"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rss_mb(pid: int, field: str = "Rss") -> float:
    """Resident memory of `pid` and its descendants (a `serve` and its worker processes).

    `Rss` counts pages shared between them (the mapped components) once per process; `Pss`
    divides each shared page among the processes that map it, so the sum is the real total.
    """
    total = 0
    for member in process_tree(pid):
        try:
            rollup = Path(f"/proc/{member}/smaps_rollup").read_text()
            total += int(re.search(rf"^{field}:\s+(\d+)", rollup, re.M).group(1))
        except (OSError, AttributeError):
            pass
    return total / 1024


def process_tree(pid: int) -> set[int]:
    """`pid` and all its descendants."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    tree, grew = {pid}, True
    while grew:
        grew = False
        for child, parent in parents.items():
            if parent in tree and child not in tree:
                tree.add(child)
                grew = True
    return tree


# -- load ------------------------------------------------------------------------------------


def wrk_scripts(tmp: Path, key: str) -> dict[str, Path]:
    tmp.mkdir()
    upload = tmp / "upload.bin"
    upload.write_bytes(os.urandom(UPLOAD_MB << 20))
    boundary = "wasmgatebenchboundary"
    body = tmp / "upload.body"  # next to upload.lua: _warm_up finds it by that name
    with open(body, "wb") as out:
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f.bin"\r\n'
                  "Content-Type: application/octet-stream\r\n\r\n".encode())
        out.write(upload.read_bytes())
        out.write(f"\r\n--{boundary}--\r\n".encode())
    echo = tmp / "echo.lua"
    echo.write_text(
        f'wrk.method = "POST"\nwrk.body = \'{ECHO_BODY.decode()}\'\n'
        f'wrk.headers["Content-Type"] = "application/json"\nwrk.headers["X-API-Key"] = "{key}"\n'
    )
    multipart = tmp / "upload.lua"
    multipart.write_text(
        f'wrk.method = "POST"\nlocal f = io.open("{body}", "rb")\nwrk.body = f:read("*all")\nf:close()\n'
        f'wrk.headers["Content-Type"] = "multipart/form-data; boundary={boundary}"\n'
        f'wrk.headers["X-API-Key"] = "{key}"\n'
    )
    return {"echo": echo, "upload": multipart}


def wrk(url: str, script: Path | None, connections: int, seconds: int) -> dict:
    """wrk's numbers for `url` (a GET, or what `script` sends)."""
    command = ["wrk", "-t", str(min(2, connections)), "-c", str(connections), "-d", f"{seconds}s",
               "--timeout", "30s", "--latency", *(["-s", str(script)] if script else []), url]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),
        "p99_ms": _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(n) for n in errors.groups()) if errors else 0,
    }


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def wait_ready(url: str, process: subprocess.Popen, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url}: not ready after {timeout_s} s")


@contextmanager
def running(command: list[str], ready_url: str, env: dict | None = None, log: Path | None = None) -> Iterator[subprocess.Popen]:
    out = open(log, "ab") if log else subprocess.DEVNULL
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=out, stderr=out)
    try:
        wait_ready(ready_url, process)
        yield process
    except BaseException:
        if log is not None and log.exists():  # the server's side of what went wrong
            print(f"--- the last lines of the server's log ({log.name}) ---\n"
                  + "\n".join(log.read_text(errors="replace").splitlines()[-40:]), flush=True)
        raise
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def _warm_up(url: str, script: Path) -> None:
    """One request with a long timeout: a system's first call may compile or cache things."""
    body = script.with_suffix(".body")
    content = body.read_bytes() if body.exists() else ECHO_BODY
    kind = "multipart/form-data; boundary=wasmgatebenchboundary" if body.exists() else "application/json"
    key = re.search(r'X-API-Key"\] = "([^"]+)"', script.read_text()).group(1)
    httpx.post(url, content=content, headers={"Content-Type": kind, "X-API-Key": key}, timeout=300)


@dataclass
class HttpSystem:
    """One system under test over HTTP: where it answers, and the wrk scripts (with its key)."""

    name: str
    base: str
    api_path: str
    scripts: dict[str, Path]
    pid: int
    floor: bool = False  # also measure its own /healthz at one connection

    def url(self, workload: str) -> str:
        return f"{self.base}{self.api_path}/{workload}"


def measure_interleaved(systems: list[HttpSystem], seconds: int, results: dict) -> None:
    """Every system on every workload and concurrency, the systems taking turns.

    The echo (and each gateway's /healthz) in ROUNDS rounds of `seconds / ROUNDS` (at least
    2 s) each, every system once a round, each round starting one system later, so that the
    VM's slow and fast spells of a few minutes fall on all of them alike: a row is the mean
    of its rounds' requests a second (kept as `rounds_rps`), the median of their p50 and p99
    and the sum of their failures. The upload in one turn of `seconds` each (its requests
    take up to seconds under load: shorter turns would complete few). After every turn the
    next waits until the system just measured is idle (`_settled`): wrk stops sending, but a
    server may still be working through uploads it had accepted."""
    turn = max(2, round(seconds / ROUNDS))
    for system in systems:
        results["http"][system.name] = {}
        if system.floor:
            results["http"][f"{system.name} /healthz"] = {}
    jobs = [(workload, c) for workload in ("echo", "upload") for c in CONNECTIONS] + [("healthz", 1)]
    for workload, connections in jobs:
        taking_part = [s for s in systems if s.floor or workload != "healthz"]
        if connections == CONNECTIONS[0] and workload != "healthz":
            for system in taking_part:  # a system's first calls may compile or cache things
                try:
                    _warm_up(system.url(workload), system.scripts[workload])
                    wrk(system.url(workload), system.scripts[workload], 1, 1)
                except (httpx.HTTPError, subprocess.CalledProcessError, AttributeError) as error:
                    _drop(system, systems, results, f"its warm-up failed: {error!r}")
                _settled(system)
        rounds, length = (1, seconds) if workload == "upload" else (ROUNDS, turn)
        runs: dict[str, list[dict]] = {s.name: [] for s in taking_part}
        for round_ in range(rounds):
            shift = round_ % max(1, len(taking_part))
            for system in taking_part[shift:] + taking_part[:shift]:
                if system not in systems:
                    continue
                url, script = (system.base + "/healthz", None) if workload == "healthz" else (
                    system.url(workload), system.scripts[workload])
                try:
                    runs[system.name].append(wrk(url, script, connections, length))
                except (subprocess.CalledProcessError, AttributeError) as error:  # wrk failed, or printed no figures
                    _drop(system, systems, results, f"wrk failed on {url}: {error}")
                _settled(system)
        for system in (s for s in taking_part if s in systems):
            row = _combined(runs[system.name])
            name = f"{system.name} /healthz" if workload == "healthz" else system.name
            results["http"][name][f"{workload}@{connections}"] = row
            print(f"  {name:<22} {workload:<7} c={connections:<3} {row['rps']:8.1f} req/s  p50 {row['p50_ms']:8.2f} ms"
                  f"  p99 {row['p99_ms']:8.2f} ms  non-2xx {row['non_2xx']}  errors {row['socket_errors']}"
                  f"  (rounds: {', '.join(f'{r:.0f}' for r in row['rounds_rps'])} req/s)", flush=True)


def _settled(system: HttpSystem, idle_share: float = 0.05, limit_s: float = 120) -> None:
    """Wait until `system`'s processes use under `idle_share` of a core over 0.25 s."""
    deadline = time.monotonic() + limit_s
    before = _cpu_seconds(system.pid)
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = _cpu_seconds(system.pid)
        if now - before < idle_share * 0.25:
            return
        before = now


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by `pid` and its descendants."""
    ticks = 0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _drop(system: HttpSystem, systems: list[HttpSystem], results: dict, why: str) -> None:
    if system in systems:
        systems.remove(system)
        results["http"].pop(system.name, None)
        results["http"].pop(f"{system.name} /healthz", None)
        results["skipped"][system.name] = why
        print(f"  {system.name}: dropped ({why})", flush=True)


def _combined(rounds: list[dict]) -> dict:
    rps = [r["rps"] for r in rounds]
    return {
        "rps": round(sum(rps) / len(rps), 1),
        "p50_ms": statistics.median(r["p50_ms"] for r in rounds),
        "p99_ms": statistics.median(r["p99_ms"] for r in rounds),
        "non_2xx": sum(r["non_2xx"] for r in rounds),
        "socket_errors": sum(r["socket_errors"] for r in rounds),
        "rounds_rps": rps,
    }


# -- wasmgate ---------------------------------------------------------------------------------


def data_dir_with_cached_store(tmp: Path) -> Path:
    data = tmp / "data"
    data.mkdir(parents=True)
    (CACHE / "store").mkdir(parents=True, exist_ok=True)
    (data / "store").symlink_to(CACHE / "store")
    return data


@contextmanager
def fresh_gateway(prefix: str, **env: str) -> Iterator[tuple[str, subprocess.Popen, Path, Path]]:
    """`wasmgate serve` (its default processes, settings from `env` on top of the benchmark's)
    on a free port over a fresh data dir sharing the benchmark's cached store: (base URL,
    server process, data dir, scratch dir)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as scratch:
        tmp = Path(scratch)
        data = data_dir_with_cached_store(tmp)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with running(serve_command(port), base + "/readyz", {**gateway_env(data), **env}, tmp / "gateway.log") as server:
            yield base, server, data, tmp


def gateway_env(data_dir: Path) -> dict:
    return {"WASMGATE_ADMIN_TOKEN": TOKEN, "WASMGATE_DATA_DIR": str(data_dir),
            "WASMGATE_RATE_LIMIT_REQUESTS": "1000000000", "WASMGATE_QUEUE_SIZE": "1024",
            "WASMGATE_QUEUE_TIMEOUT_S": "30"}


def deploy(base: str, name: str, version: int) -> dict:
    response = httpx.post(f"{base}/v1/apis", json={"name": name, "source": WASMGATE_APP.format(version=version)},
                          headers={"Authorization": f"Bearer {TOKEN}"}, timeout=900)
    response.raise_for_status()
    return response.json()


def serve_command(port: int, workers: int | None = None) -> list[str]:
    command = [sys.executable, "-m", "cli.main", "serve", "--port", str(port)]
    return command + (["--workers", str(workers)] if workers else [])


def start_wasmgate(stack: ExitStack, tmp: Path) -> tuple[list[HttpSystem], Path, dict]:
    """The gateway with its default (one process per core), and with one process, each with
    the echo API deployed: the systems, and the default gateway's data dir and API (for the
    restart measurement)."""
    systems, first = [], None
    for label, workers in ((f"wasmgate ({os.cpu_count()} processes)", None), ("wasmgate (1 process)", 1)):
        where = tmp / f"wasmgate-{workers or 'default'}"
        data = data_dir_with_cached_store(where)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = stack.enter_context(running(serve_command(port, workers), base + "/readyz", gateway_env(data),
                                             where / "wasmgate.log"))
        api = deploy(base, "echo", 0)
        systems.append(HttpSystem(label, base, f"/run/{api['id']}", wrk_scripts(where / "wrk", api["api_key"]),
                                  server.pid, floor=True))
        first = first or (data, api)
    return systems, *first


def bench_first_request(tmp: Path, data: Path, api: dict, results: dict) -> None:
    """The first request of a never-called API after a restart (the default gateway's)."""
    port = free_port()
    with running(serve_command(port), f"http://127.0.0.1:{port}/readyz", gateway_env(data), tmp / "restart.log"):
        time.sleep(1)  # every process up, not only the first to answer /readyz
        first_ms, second_ms = (post_echo(port, api) for _ in range(2))
    results["first_request_after_restart_ms"] = round(first_ms, 2)
    results["second_request_after_restart_ms"] = round(second_ms, 2)
    print(f"  first request of a never-called API after a restart: {first_ms:.1f} ms (the next: {second_ms:.1f} ms)",
          flush=True)


def bench_http(tmp: Path, seconds: int, results: dict) -> None:
    """Every system over HTTP, all of them up at once and measured in turns."""
    with ExitStack() as stack:
        systems, data, api = start_wasmgate(stack, tmp)
        systems += start_baselines(stack, tmp, results)
        measure_interleaved(systems, seconds, results)
    bench_first_request(tmp, data, api, results)


def post_echo(port: int, api: dict, connection: http.client.HTTPConnection | None = None) -> float:
    """One echo call, in ms. http.client sends headers and body in one write (httpx's two
    writes meet the server's delayed ACK and add ~40 ms to every request)."""
    started = time.perf_counter()
    conn = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", f"/run/{api['id']}/echo", body=ECHO_BODY,
                 headers={"X-API-Key": api["api_key"], "Content-Type": "application/json"})
    response = conn.getresponse()
    body = response.read()
    assert response.status == 200, body
    if connection is None:
        conn.close()
    return (time.perf_counter() - started) * 1000


def _memory(pid: int, base: str) -> dict:
    metrics = httpx.get(f"{base}/metrics", timeout=30).text
    loaded = re.search(r"^wasmgate_components_loaded (\S+)$", metrics, re.M)
    return {"rss_mb": round(rss_mb(pid), 1), "pss_mb": round(rss_mb(pid, "Pss"), 1),
            "components_loaded": int(float(loaded.group(1))) if loaded else None}


# -- baselines --------------------------------------------------------------------------------


def peers_python() -> tuple[Path | None, str]:
    """A Python >= 3.12 venv with pyeryx and capsule-run-adapter, made once under the cache."""
    venv = CACHE / "peers-venv"
    python = venv / "bin" / "python"
    if python.exists():
        return python, ""
    base = next((c for c in _pythons() if _runs_312(c)), None)
    if base is None:
        return None, "no Python >= 3.12 on this machine (pyeryx needs one)"
    try:
        subprocess.run([base, "-m", "venv", str(venv)], check=True, capture_output=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "pyeryx", "capsule-run", "capsule-run-adapter",
                        "fastapi", "uvicorn", "python-multipart"], check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as error:
        shutil.rmtree(venv, ignore_errors=True)
        return None, f"installing the peers failed: {(error.stderr or '')[-300:]}"
    return python, ""


def _pythons() -> list[str]:
    """Interpreters that may be 3.12 or newer: on PATH, and pyenv's installed versions."""
    found = [shutil.which(f"python3.{minor}") for minor in (14, 13, 12)]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found += sorted((str(p) for p in pyenv.glob("3.1[2-9]*/bin/python3")), reverse=True)
    return [c for c in found if c]


def _runs_312(python: str) -> bool:
    try:
        check = subprocess.run([python, "-c", "import sys; sys.exit(sys.version_info < (3, 12))"], capture_output=True)
    except OSError:
        return False
    return check.returncode == 0


def start_baselines(stack: ExitStack, tmp: Path, results: dict) -> list[HttpSystem]:
    """The baselines that could be started (each on its own port), the others recorded as skipped."""
    scripts = wrk_scripts(tmp / "baselines", KEY)
    candidates = [(name, sys.executable, f"benchmarks.baselines.{module}", {}) for name, module in (
        ("exec()+TestClient", "exec_testclient"), ("process per request", "process_per_request"),
        ("HTTP floor", "http_floor"))]
    python, why = peers_python()
    if python is None:
        for name in PEERS:
            results["skipped"][name] = why
            print(f"  {name}: skipped ({why})", flush=True)
    else:
        path = {"PATH": f"{python.parent}:{os.environ.get('PATH', '')}"}
        candidates[2:2] = [(name, str(python), f"benchmarks.baselines.{module}", path) for name, module in PEERS.items()]
    systems = []
    for name, interpreter, module, env in candidates:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        try:
            server = stack.enter_context(running([interpreter, "-m", module, "--port", str(port)], base + "/docs",
                                                 env, tmp / f"{module}.log"))
        except RuntimeError as error:
            results["skipped"][name] = str(error)
            print(f"  {name}: failed to start ({error})", flush=True)
            continue
        systems.append(HttpSystem(name, base, "/run/echo", scripts, server.pid))
    return systems


# -- the runtime without HTTP -----------------------------------------------------------------


def bench_runtime(n: int, results: dict) -> None:
    store = BundleStore(CACHE / "store")
    echo = SandboxRequest("POST", "/echo", headers=[("content-type", "application/json")], body=ECHO_BODY)
    limits = Limits()
    source = CACHE / "runtime-app" / "app.py"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text(WASMGATE_APP.format(version=0))

    pooled = Runtime(store, pool=PoolBudget(ready=4, depth=4, busy_s=0))
    inline = Runtime(store, pool=PoolBudget(ready=0, fillers=0))
    bundle = build(source, store, runtime=inline).bundle
    try:
        times: dict[str, list[float]] = {name: [] for name in RUNTIME_ROWS}
        pooled.invoke(bundle, echo, limits)  # makes the bundle hot
        reused = inline._make_instance(bundle)
        reused.warm()
        actions = [("pre-made", lambda: pooled.invoke(bundle, echo, limits)),
                   ("inline-made", lambda: inline.invoke(bundle, echo, limits)),
                   ("reused (no isolation)", lambda: serve_again(reused, echo, limits))]
        for _ in range(n):  # interleaved in a new order each round, so that drift hits all three alike
            random.shuffle(actions)
            for name, action in actions:
                _at_rest(pooled)
                started = time.perf_counter()
                action()
                times[name].append((time.perf_counter() - started) * 1000)
        reused.close()
        rows = {name: {"p50_ms": round(pct(t, .5), 3), "p99_ms": round(pct(t, .99), 3)} for name, t in times.items()}
        results["runtime"] = rows
        for name, row in rows.items():
            print(f"  runtime, JSON echo, {name:<22} p50 {row['p50_ms']:7.3f} ms  p99 {row['p99_ms']:7.3f} ms", flush=True)
        results["upload_floor"] = _sandbox_upload(pooled, bundle, limits)
        print(f"  runtime, 10 MB upload read and hashed by the sandbox, pre-made: p50"
              f" {results['upload_floor']['sandbox_p50_ms']:.1f} ms (the host's own sha256 of it:"
              f" {results['upload_floor']['host_sha256_ms']:.1f} ms)", flush=True)
        results["instance_memory_mb"] = _instance_memory(inline, bundle, echo, limits)
        print(f"  memory per instance: {results['instance_memory_mb']}", flush=True)
    finally:
        pooled.close()
        inline.close()
    results["instance_cpu_ms"] = _instance_cpu(store, bundle, echo, limits, n)
    print(f"  CPU per instance (make, call, close): {results['instance_cpu_ms']}", flush=True)


def _sandbox_upload(pooled: Runtime, bundle, limits: Limits) -> dict:  # noqa: ANN001
    """The upload's share no gateway can take off: the sandbox reading and hashing the 10 MB
    (the benchmark app's /upload, a pre-made instance, the file already on disk), and, for
    comparison, the host's own CPython hashing the same bytes (with the CPU's SHA
    instructions, which WebAssembly cannot reach). p50 of UPLOAD_CALLS each."""
    data = os.urandom(UPLOAD_MB << 20)
    digest = hashlib.sha256(data).hexdigest()
    with tempfile.TemporaryDirectory(prefix="wasmgate-bench-upload-") as name:
        directory = Path(name)
        path = directory / "upload-0000"
        path.write_bytes(data)
        upload = Upload("file", "f.bin", "application/octet-stream", path, len(data))
        request = SandboxRequest("POST", "/upload", files=[upload], upload_dir=directory)
        sandbox, host = [], []
        for _ in range(UPLOAD_CALLS):
            _at_rest(pooled)
            started = time.perf_counter()
            answer = pooled.invoke(bundle, request, limits).response
            sandbox.append((time.perf_counter() - started) * 1000)
            assert answer.status == 200 and json.loads(answer.body) == {"size": len(data), "sha256": digest}, answer
            started = time.perf_counter()
            hashlib.sha256(data).hexdigest()
            host.append((time.perf_counter() - started) * 1000)
    return {"sandbox_p50_ms": round(pct(sandbox, .5), 2), "host_sha256_ms": round(pct(host, .5), 2)}


def _instance_cpu(store: BundleStore, bundle, request: SandboxRequest, limits: Limits, n: int) -> dict:  # noqa: ANN001
    """Process CPU per fresh instance, made, called and closed on one thread, in alternating
    rounds, with each way of resetting a slot: restoring only the pages instances wrote (the
    default), and copying the whole kept-resident prefix back (wasmtime's C API default)."""
    variants = {"dirty pages only": True, "whole resident prefix": False}
    runtimes = {name: Runtime(store, engine=Engine(EngineConfig(slots=8, reset_dirty_pages_only=dirty)),
                              pool=PoolBudget(ready=0, fillers=0)) for name, dirty in variants.items()}
    cpu = {name: 0.0 for name in variants}
    try:
        for runtime in runtimes.values():
            for _ in range(10):
                runtime.invoke(bundle, request, limits)
        for _ in range(max(1, n // 25)):
            for name, runtime in runtimes.items():
                started = time.process_time()
                for _ in range(25):
                    runtime.invoke(bundle, request, limits)
                cpu[name] += time.process_time() - started
    finally:
        for runtime in runtimes.values():
            runtime.close()
    rounds = max(1, n // 25) * 25
    row = {name: round(total / rounds * 1000, 3) for name, total in cpu.items()}
    row["pagemap_scan"] = runtimes["dirty pages only"].engine.resets_dirty_pages_only
    return row


def _at_rest(pooled: Runtime) -> None:
    """Wait for the pool to be full with nothing being made or closed, then for IDLE_S more.

    Every call is measured after the same pause: on this VM a call made right after another
    finds the caches hot and runs up to 2x faster than one made after a pause of a few
    milliseconds, whatever kind of instance it uses (as a request over the network would).
    """
    while (stats := pooled.pool.stats())["ready"] < 4 or stats["live"] > stats["ready"]:
        time.sleep(0.001)
    time.sleep(IDLE_S)


def _instance_memory(runtime: Runtime, bundle, request: SandboxRequest, limits: Limits) -> dict:  # noqa: ANN001
    """RSS and PSS added per pre-made (never used) instance, and per instance after one call.

    RSS counts every page a slot maps, the image file's own pages (page cache, one copy for
    every slot that maps them) included; PSS divides each shared page among those mapping it.
    """
    count = 16
    pid = os.getpid()
    before = {field: rss_mb(pid, field) for field in ("Rss", "Pss")}
    held = [runtime._make_instance(bundle) for _ in range(count)]
    premade = {field: (rss_mb(pid, field) - mb) / count for field, mb in before.items()}
    for instance in held:
        instance.run(request, limits)
    used = {field: (rss_mb(pid, field) - mb) / count for field, mb in before.items()}
    for instance in held:
        instance.close()
    return {"pre-made": round(premade["Rss"], 2), "after one call": round(used["Rss"], 2),
            "pre-made PSS": round(premade["Pss"], 2), "after one call PSS": round(used["Pss"], 2)}


def _bounded(kind: type, unit: str, low: float, high: float):  # noqa: ANN202
    """An argparse type: a `kind` number of `unit` from `low` to `high`."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of {unit}: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} {unit}: give {low:g} to {high:g}")
        return value

    return parse


_seconds = _bounded(int, "whole seconds", 1, 600)
_gib = _bounded(float, "GiB", 0, 1024)


def touch_memory(gib: float) -> float:
    """Write one byte in every page of `gib` GiB (then free it); microseconds a page.

    A freshly booted VM of this machine kind backs its memory lazily in the host: the first
    write to each page of guest memory took ~8 us (21 GiB: 45 s of system time), later ones a
    fraction of that. Instances make and reset pages all the time, so until the kernel hands
    out pages the host has backed, wasmgate's rows measure the host's page backing more than
    wasmgate (seen: 300 against 460 req/s at 16 connections before and after one touch; the
    host takes freed memory back after a while, so the effect of a touch wears off)."""
    pages = int(gib * (1 << 30)) // 4096
    started = time.perf_counter()
    chunks = []
    for start in range(0, pages, 1 << 18):  # 1 GiB at a time
        chunk = bytearray(min(1 << 18, pages - start) * 4096)
        chunk[::4096] = b"\x01" * len(range(0, len(chunk), 4096))
        chunks.append(chunk)
    del chunks
    return (time.perf_counter() - started) / max(1, pages) * 1e6


# -- report ------------------------------------------------------------------------------------


def table(results: dict) -> str:
    http = results["http"]
    exec_row = http.get("exec()+TestClient", {})
    lines = ["| system | workload | c | req/s | p50 ms | p99 ms | non-2xx | × exec()+TestClient |", "|---|---|---|---|---|---|---|---|"]
    for system, rows in http.items():
        for key, row in rows.items():
            workload, connections = key.split("@")
            base = exec_row.get(key, {}).get("rps")
            ratio = f"{row['rps'] / base:.2f}" if base else ""
            lines.append(f"| {system} | {workload} | {connections} | {row['rps']:.1f} | {row['p50_ms']:.2f} |"
                         f" {row['p99_ms']:.2f} | {row['non_2xx'] + row['socket_errors']} | {ratio} |")
    return "\n".join(lines)


def targets(results: dict) -> str:
    """The issue's targets, each with what this run measured and whether it is met."""
    http = results["http"]
    gateway = next(name for name in http if name.startswith("wasmgate (") and not name.endswith("/healthz"))
    ours, healthz = http[gateway], http[f"{gateway} /healthz"]["healthz@1"]["p50_ms"]
    premade, reused = (results["runtime"][k]["p50_ms"] for k in ("pre-made", "reused (no isolation)"))
    p50 = ours["echo@1"]["p50_ms"]
    rows = [
        ("runtime, pre-made: p50 <= 0.4 ms and <= 1.0x reused",
         f"{premade:.3f} ms, {premade / reused:.2f}x reused ({reused:.3f} ms)", premade <= 0.4 and premade <= reused),
        (f"{gateway}, 1 connection: p50 <= 1.5 ms and <= 3x /healthz", f"{p50:.2f} ms, {p50 / healthz:.1f}x",
         p50 <= 1.5 and p50 <= 3 * healthz),
    ]
    for other, bound in (("exec()+TestClient", 2.0), ("pyeryx", 1.5), ("capsule-run", 1.5), ("process per request", 10.0)):
        target = f"echo req/s at 16 and 64 connections >= {bound:g}x {other}"
        if other not in http:
            rows.append((target, f"not measured: {results['skipped'].get(other, 'skipped')}", None))
            continue
        ratios = [ours[f"echo@{c}"]["rps"] / max(http[other][f"echo@{c}"]["rps"], 1e-9) for c in (16, 64)]
        rows.append((target, " / ".join(f"{r:.2f}x" for r in ratios), min(ratios) >= bound))
    failed = sum(row["non_2xx"] + row["socket_errors"] for row in ours.values())
    rows.append((f"{gateway}: 0 non-2xx", str(failed), failed == 0))
    upload = ours["upload@1"]["p50_ms"]
    rows.append(("10 MB multipart p50 <= 50 ms", f"{upload:.1f} ms{_upload_floor(results, upload)}", upload <= 50))
    first = results["first_request_after_restart_ms"]
    rows.append(("first request of a never-called API after a restart <= 20 ms", f"{first:.1f} ms", first <= 20))
    deployed = results["scale"]["rows"] if "scale" in results else results["rss"]  # "rss": runs before 2026-12-05
    most = max((r for r in deployed if "after_requests" not in r and "after_restart" not in r), key=lambda r: r["apis"])
    rows.append(("1,000 deployed APIs <= 2 GB RSS", f"{most['rss_mb']:.0f} MB with {most['apis']} APIs",
                 most["rss_mb"] <= 2048 if most["apis"] >= 1000 else None))
    verdict = {True: "met", False: "not met", None: "not measured"}
    lines = ["| target | measured | |", "|---|---|---|"]
    lines += [f"| {target} | {measured} | {verdict[met]} |" for target, measured, met in rows]
    return "\n".join(lines)


def _upload_floor(results: dict, upload: float) -> str:
    """What the upload can take at least in this run, when measured (runs since 2026-12-07):
    the HTTP floor receiving it (its upload's p50 less the host's hashing) plus the sandbox
    alone reading and hashing it."""
    floor, http_floor = results.get("upload_floor"), results["http"].get("HTTP floor", {}).get("upload@1")
    if floor is None or http_floor is None:
        return ""
    receiving = http_floor["p50_ms"] - floor["host_sha256_ms"]
    total = receiving + floor["sandbox_p50_ms"]
    return (f"; floor {total:.1f} ms ({upload / total:.2f}x): the HTTP floor receiving it {receiving:.1f} ms"
            f" + the sandbox alone reading and hashing it {floor['sandbox_p50_ms']:.1f} ms"
            f" (the host hashes it in {floor['host_sha256_ms']:.1f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=_seconds, default=5,
                        help="wrk time of each system at each workload and concurrency (the echo's in 3 turns of >= 2 s)")
    from bench_scale import api_counts, bench_scale  # it imports this module's helpers
    parser.add_argument("--apis", type=api_counts, default="1,10",
                        help="API counts for the many-APIs part, e.g. 1,100,1000")
    parser.add_argument("--runtime-rounds", type=int, default=300)
    parser.add_argument("--touch-memory-gb", type=_gib, default=0,
                        help="first write every page of this much memory (a freshly booted VM backs it lazily)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "latest.json")
    parser.add_argument("--from-json", type=Path, help="print the tables of an earlier run's JSON instead of running")
    parser.add_argument("--only-memory", action="store_true",
                        help="only benchmarks/bench_scale.py's part, with --apis deployed APIs (its own JSON)")
    args = parser.parse_args()
    if args.from_json:
        try:
            results = json.loads(args.from_json.read_text())
            print(table(results) + "\n\n" + targets(results))
        except (OSError, ValueError, KeyError, TypeError) as error:
            parser.error(f"--from-json {args.from_json}: not a compare.py result ({error!r})")
        return
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    results: dict = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())},
        "http": {}, "skipped": {},
    }
    if args.touch_memory_gb:
        results["machine"]["touched_memory_gb"] = args.touch_memory_gb
        results["machine"]["touch_us_per_page"] = round(touch_memory(args.touch_memory_gb), 2)
        print(f"touched {args.touch_memory_gb:g} GiB: {results['machine']['touch_us_per_page']} us a page", flush=True)
    results["machine"]["page_write_us"] = round(touch_memory(0.25), 2)
    print(f"a first write to a page of new memory costs {results['machine']['page_write_us']} us here "
          "(every instance makes pages its own: the higher, the lower wasmgate's rows)", flush=True)
    with tempfile.TemporaryDirectory(prefix="wasmgate-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if args.only_memory:
            bench_scale(tmp, args.apis, results)
            args.out.write_text(json.dumps(results, indent=2) + "\n")
            print(f"written to {args.out}")
            return
        # What each part measured is kept as it ends (<out>.partial), so that a failure in a
        # later part does not lose it; the file becomes <out> when the run is whole.
        partial = args.out.with_name(args.out.name + ".partial")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        for title, part in (("runtime (no HTTP):", lambda: bench_runtime(args.runtime_rounds, results)),
                            ("over HTTP, every system up at once, in turns:", lambda: bench_http(tmp, args.seconds, results)),
                            ("memory, disk and start-up with many APIs:", lambda: bench_scale(tmp, args.apis, results))):
            if title:
                print(title, flush=True)
            part()
            partial.write_text(json.dumps(results, indent=2) + "\n")
    results["table"], results["targets"] = table(results), targets(results)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    partial.unlink()
    print("\n" + results["table"] + "\n\n" + results["targets"])
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
