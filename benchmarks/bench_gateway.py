"""Requests per second and latency of a JSON echo through the gateway, with wrk as the load.

    apt-get install wrk   # the load generator (Debian package)
    .venv/bin/python benchmarks/bench_gateway.py [--seconds 10]

Starts `wasmgate serve` on a free port with a fresh data dir, deploys a JSON echo API, then
runs wrk against GET /healthz (the baseline: HTTP and the event loop, no sandbox) and against
the echo at 1 and 8 connections, and prints req/s, p50/p99 and the ratio to the baseline.
Then the same echo with rate limits kept in Redis (a redis-server it starts) instead of in
process, to show what a shared limiter adds per request.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from redis_server import RedisServer  # noqa: E402

TOKEN = "bench-admin-token"
ECHO = '''
from wasmgate import App
app = App()

@app.post("/echo")
def echo(body: dict):
    return body
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wrk(url: str, seconds: int, connections: int, script: Path | None = None) -> tuple[float, str, str]:
    command = ["wrk", "-t", str(min(2, connections)), "-c", str(connections), "-d", f"{seconds}s", "--latency", url]
    if script:
        command[1:1] = ["-s", str(script)]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw errors:\n{out}")
    return rps, p50, p99


def serve_and_measure(seconds: int, label: str, **env_extra: str) -> dict[int, tuple[float, str, str]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "WASMGATE_ADMIN_TOKEN": TOKEN, "WASMGATE_DATA_DIR": tmp,
               "WASMGATE_RATE_LIMIT_REQUESTS": "100000000", **env_extra}
        server = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--port", str(port)],
                                  cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(300):
                try:
                    if httpx.get(base + "/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            created = httpx.post(base + "/v1/apis", json={"name": "echo", "source": ECHO},
                                 headers={"Authorization": f"Bearer {TOKEN}"}, timeout=600).json()
            script = Path(tmp) / "echo.lua"
            script.write_text(
                'wrk.method = "POST"\nwrk.body = \'{"values": [1, 2, 3]}\'\n'
                f'wrk.headers["Content-Type"] = "application/json"\nwrk.headers["X-API-Key"] = "{created["api_key"]}"\n'
            )
            echo_url = f"{base}/run/{created['id']}/echo"
            baseline, b50, b99 = wrk(base + "/healthz", seconds, 8)
            print(f"[{label}] GET /healthz (baseline), 8 connections: {baseline:7.0f} req/s  p50 {b50:>8}  p99 {b99:>8}")
            for connections in (1, 8):
                rps, p50, p99 = results[connections] = wrk(echo_url, seconds, connections, script)
                print(f"[{label}] JSON echo through the sandbox, {connections} connection(s): {rps:7.0f} req/s  "
                      f"p50 {p50:>8}  p99 {p99:>8}  ({rps / baseline:.2f}x baseline throughput)")
        finally:
            server.terminate()
            server.wait(30)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    local = serve_and_measure(args.seconds, "limits in process")
    with RedisServer() as redis:
        shared = serve_and_measure(args.seconds, "limits in Redis", WASMGATE_REDIS_URL=redis.url)
    one_local, one_shared = local[1][0], shared[1][0]
    print(f"Redis limits vs in process, 1 connection: {1000 / one_shared - 1000 / one_local:+.2f} ms per request "
          f"(throughput ratio {one_shared / one_local:.2f})")


if __name__ == "__main__":
    main()
