"""Shared pieces of the gateway tests: the test APIs' sources, built once per session (in
parallel), data dirs that share the session's bundle store, and a real server process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).parent.parent
ADMIN_TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

HELLO = (ROOT / "examples" / "hello.py").read_text()
PROBE = (Path(__file__).parent / "apps" / "probe.py").read_text()
# Version 2 of the example: the same routes plus a version marker and inspection routes.
HELLO_V2 = HELLO + '''

import hashlib

from wasmgate import Request


@app.get("/version")
def version():
    return {"version": 2}


@app.post("/digest")
def digest(request: Request):
    """What arrived of a multipart request: the text fields, and each file's bytes' sha256."""
    return {
        "form": request.form,
        "files": [
            {
                "field": f.field,
                "filename": f.filename,
                "content_type": f.content_type,
                "size": f.size,
                "sha256": hashlib.sha256(f.read()).hexdigest(),
            }
            for f in request.files
        ],
    }


@app.route("/inspect/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def inspect(request: Request, rest: str):
    body = request.body()
    return {
        "method": request.method,
        "path": request.path,
        "rest": rest,
        "query": request.query,
        "headers": request.headers,
        "client": request.client,
        "form": request.form,
        "body_size": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
    }
'''


# name -> (file name, text). The file name is part of the bundle's inputs: hello.py and
# probe.py are deployed under the names other test modules build them with, so a whole
# test session builds each of them once; app.py is what a JSON deploy writes.
SOURCES = {"hello": ("hello.py", HELLO), "hello_v2": ("app.py", HELLO_V2), "probe": ("probe.py", PROBE)}


@pytest.fixture(scope="session")
def gateway_sources(build_app, tmp_path_factory) -> dict[str, tuple[str, str]]:
    """The test APIs' sources, each already built into the session store (in parallel)."""
    root = tmp_path_factory.mktemp("gateway-sources")
    paths = []
    for name, (filename, text) in SOURCES.items():
        (root / name).mkdir()
        paths.append(root / name / filename)
        paths[-1].write_text(text)
    with ThreadPoolExecutor(len(paths)) as pool:
        for future in [pool.submit(build_app, path) for path in paths]:
            future.result()
    return SOURCES


def deploy_request(name: str, source: tuple[str, str], **fields) -> dict:
    """Keyword arguments for an httpx/TestClient create or update of `source`: JSON for an
    app.py, else multipart with the file under its own name."""
    filename, text = source
    if filename == "app.py":
        return {"json": {"name": name, "source": text, **fields}}
    data = {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
    return {"data": {"name": name, **data}, "files": {"source": (filename, text.encode(), "text/x-python")}}


def data_dir_sharing_store(path: Path, bundle_store) -> Path:
    """A fresh gateway data dir whose bundle store is the session's (so deploys hit the cache)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "store").symlink_to(bundle_store.root.resolve(), target_is_directory=True)
    return path


def parse_metrics(text: str) -> dict[str, float]:
    """A /metrics answer's samples by name, with their labels as `name{k=v,...}` (sorted)."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WASMGATE_")}
    env.update(extra)
    return env


class ServerProcess:
    """`wasmgate serve` in a subprocess on a free port."""

    def __init__(self, data_dir: Path, log_path: Path, args: tuple[str, ...] = (), **env: str) -> None:
        self.data_dir = data_dir
        self.args = list(args)
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = server_env(WASMGATE_ADMIN_TOKEN=ADMIN_TOKEN, **env)
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60, until: str = "/readyz") -> None:
        """Start it and wait until `until` answers 200."""
        command = [sys.executable, "-m", "cli.main", "serve", "--port", str(self.port)]
        command += ["--data-dir", str(self.data_dir), *self.args]
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + until, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the server did not become ready: {self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """kill -9: no shutdown handlers run."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def fresh(server: "ServerProcess", method: str, path: str, **kwargs) -> httpx.Response:
    """One request on a connection of its own (the kernel picks which worker process accepts it)."""
    with httpx.Client(base_url=server.url, timeout=60) as client:
        return client.request(method, path, **kwargs)


def spread(server: "ServerProcess", n: int, method: str, path: str, threads: int = 8, **kwargs) -> list[httpx.Response]:
    """`n` requests, each on a fresh connection, `threads` at a time."""
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda _: fresh(server, method, path, **kwargs), range(n)))
