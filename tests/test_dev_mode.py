"""`wasmgate dev DIR` and `wasmgate init NAME`, run as a user would, in subprocesses.

One `dev` process serves a folder holding one API, `hello/app.py`, through the steps of an
edit session, in order: it prints the API's URL, key and docs and serves it; an edit (a new
route) is hot-swapped in; a syntax error is shown and the previous version keeps serving; a
save that changes nothing rebuilds nothing; a restart keeps the key and rebuilds nothing.
The sources are ones the session builds anyway (the example as `app.py`, and its version 2),
so every build but the failing one is a cache hit. Hang bounds are generous, never asserted.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from gateway_support import (
    ADMIN_TOKEN, HELLO, HELLO_V2, ROOT, ServerProcess, data_dir_sharing_store, free_port, server_env,
)

HANG_S = 120
BLOCK = re.compile(r"^hello \(version (\d+)\): (http://\S+/run/\w+)\n  key:  (\S+)\n  docs: (\S+)$", re.MULTILINE)


class DevProcess:
    """`wasmgate dev FOLDER` on a free port, its stdout and stderr in one file."""

    def __init__(self, folder: Path, data_dir: Path, log_path: Path) -> None:
        self.folder, self.data_dir, self.log_path = folder, data_dir, log_path
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "cli.main", "dev", str(self.folder), "--port", str(self.port),
                   "--data-dir", str(self.data_dir)]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=server_env(WASMGATE_ADMIN_TOKEN=ADMIN_TOKEN),
                                            stdout=log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log_path.read_text()

    def wait_for(self, pattern: str | re.Pattern, after: int = 0) -> re.Match:
        """The first match of `pattern` in the output past offset `after`, waited for."""
        regex = pattern if isinstance(pattern, re.Pattern) else re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + HANG_S
        while time.monotonic() < deadline:
            match = regex.search(self.output(), after)
            if match:
                return match
            assert self.process.poll() is None, f"dev exited: {self.output()[-3000:]}"
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} in the output: {self.output()[after:][-3000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # Ctrl-C
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@pytest.fixture(scope="module")
def built(build_app) -> None:
    """The example and its version 2, both as app.py, in the session's store."""
    with ThreadPoolExecutor(2) as pool:
        for future in [pool.submit(build_app, HELLO), pool.submit(build_app, HELLO_V2)]:
            future.result()


@pytest.fixture(scope="module")
def dev(built, bundle_store, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dev")
    (tmp / "apis" / "hello").mkdir(parents=True)
    (tmp / "apis" / "hello" / "app.py").write_text(HELLO)
    process = DevProcess(tmp / "apis", data_dir_sharing_store(tmp / "data", bundle_store), tmp / "dev.log")
    process.start()
    yield process
    process.stop()


def _call(url: str, key: str, path: str) -> httpx.Response:
    return httpx.get(url + path, headers={"X-API-Key": key}, timeout=30)


def _wait_until_served(url: str, key: str, path: str) -> httpx.Response:
    deadline = time.monotonic() + HANG_S
    while time.monotonic() < deadline:
        response = _call(url, key, path)
        if response.status_code == 200:
            return response
        time.sleep(0.2)
    raise AssertionError(f"{path} never answered 200: {response.status_code} {response.text}")


def test_dev_prints_url_key_and_docs_and_serves_the_api(dev):
    version, url, key, docs = dev.wait_for(BLOCK).groups()
    assert version == "1" and url.startswith(f"http://127.0.0.1:{dev.port}/run/")
    assert docs == url + "/docs"
    assert _call(url, key, "/hello/ann").json() == {"message": "hello ann"}
    assert httpx.get(docs, timeout=30).status_code == 200
    assert _call(url, key, "/version").status_code == 404  # not yet


def test_an_edit_is_rebuilt_and_hot_swapped(dev):
    _, url, key, _ = dev.wait_for(BLOCK).groups()
    seen = len(dev.output())
    (dev.folder / "hello" / "app.py").write_text(HELLO_V2)  # adds GET /version
    assert _wait_until_served(url, key, "/version").json() == {"version": 2}
    version, new_url, new_key, _ = dev.wait_for(BLOCK, seen).groups()
    assert (version, new_url, new_key) == ("2", url, key)


def test_a_build_error_is_shown_and_the_previous_version_keeps_serving(dev):
    _, url, key, _ = dev.wait_for(BLOCK).groups()
    seen = len(dev.output())
    (dev.folder / "hello" / "app.py").write_text(HELLO_V2 + "\ndef broken(:\n")
    error = dev.wait_for(r"^hello: error: BUILD_FAILED: syntax error in app\.py line \d+.*version 2 keeps serving$", seen)
    shown = dev.output()[seen:]
    assert "def broken(:" in shown and "Traceback" not in shown, shown
    assert error is not None and _call(url, key, "/version").json() == {"version": 2}


def test_a_save_without_changes_does_not_rebuild(dev):
    app = dev.folder / "hello" / "app.py"
    seen = len(dev.output())
    app.write_text(app.read_text())  # what an editor's save without edits does
    dev.wait_for(r"^hello: unchanged, not rebuilt$", seen)
    seen = len(dev.output())
    os.utime(app)  # touch
    dev.wait_for(r"^hello: unchanged, not rebuilt$", seen)
    assert "building" not in dev.output()[seen:]


def test_a_restart_keeps_the_key_and_rebuilds_nothing(dev):
    _, url, key, _ = dev.wait_for(BLOCK).groups()
    seen = len(dev.output())
    (dev.folder / "hello" / "app.py").write_text(HELLO_V2)  # back to what version 2 serves: nothing to build
    dev.wait_for(r"^hello \(version 2\)", seen)
    assert "building" not in dev.output()[seen:]
    dev.stop()
    assert dev.process.returncode == 0 and "Traceback" not in dev.output()
    seen = len(dev.output())
    dev.start()
    version, new_url, new_key, _ = dev.wait_for(BLOCK, seen).groups()
    assert (version, new_url, new_key) == ("2", url, key)
    assert "building" not in dev.output()[seen:]
    assert _call(url, key, "/version").json() == {"version": 2}
    assert (dev.data_dir / "apis-dir.json").stat().st_mode & 0o777 == 0o600


def test_serve_apis_dir_with_two_processes_deploys_the_folder_once(built, bundle_store, tmp_path):
    (tmp_path / "apis" / "hello").mkdir(parents=True)
    (tmp_path / "apis" / "hello" / "app.py").write_text(HELLO)
    server = ServerProcess(data_dir_sharing_store(tmp_path / "data", bundle_store), tmp_path / "server.log",
                           args=("--workers", "2", "--apis-dir", str(tmp_path / "apis")))
    server.start(timeout=HANG_S)  # ready only once every process serves the folder's APIs
    try:
        log = server.log_path.read_text()
        _, url, key, _ = BLOCK.search(log).groups()
        assert log.count("hello: building hello/") == 1, log
        # Ready means served, by either process, at once.
        assert [_call(url, key, "/hello/ann").json() for _ in range(6)] == [{"message": "hello ann"}] * 6
    finally:
        server.stop()


def test_dev_refuses_a_missing_folder(tmp_path):
    result = subprocess.run([sys.executable, "-m", "cli.main", "dev", str(tmp_path / "nope")], cwd=ROOT,
                            capture_output=True, timeout=60)
    assert result.returncode == 2 and result.stderr.decode().strip() == f"error: {tmp_path / 'nope'} is not a folder"


def test_init_writes_an_api_whose_tests_pass(tmp_path):
    def init(name: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cli.main", "init", name], cwd=tmp_path, capture_output=True,
                              timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})

    made = init("shop")
    assert made.returncode == 0, made.stderr.decode()
    assert sorted(p.name for p in (tmp_path / "shop").iterdir()) == ["README.md", "app.py", "test_app.py"]
    assert "from fastapi import FastAPI" in (tmp_path / "shop" / "app.py").read_text()
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=tmp_path / "shop",
                           capture_output=True, timeout=300)
    assert tests.returncode == 0 and b"4 passed" in tests.stdout, tests.stdout.decode() + tests.stderr.decode()

    again = init("shop")
    assert again.returncode == 2 and again.stderr.decode().strip() == "error: shop exists and is not empty; choose another name"
    assert init("bad name!").returncode == 2
