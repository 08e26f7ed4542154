"""`wasmgate build` and `wasmgate invoke-local`, run as a user would, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLE


@pytest.fixture(scope="module")
def wasmgate(data_dir: Path, build_app):
    build_app(EXAMPLE)  # built once per session; the CLI finds it in the same store
    env = {**os.environ, "WASMGATE_DATA_DIR": str(data_dir)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, capture_output=True, timeout=600)

    return run


@pytest.fixture(scope="module")
def bundle_dir(wasmgate, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "hello-bundle"
    result = wasmgate("build", str(EXAMPLE), "-o", str(out))
    assert result.returncode == 0, result.stderr.decode()
    summary = json.loads(result.stdout)
    assert summary["path"] == str(out) and summary["routes"] == 5
    assert b"reading source hello.py" in result.stderr
    return out


def test_invoke_local_json(wasmgate, bundle_dir):
    result = wasmgate("invoke-local", str(bundle_dir), "--method", "POST", "--path", "/sum", "--json", '{"values": [1, 2]}')
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout) == {"sum": 3}
    assert b"HTTP 200" in result.stderr and b"fuel" in result.stderr


def test_invoke_local_upload_with_form_field(wasmgate, bundle_dir, tmp_path):
    upload = tmp_path / "photo.png"
    upload.write_bytes(os.urandom(100_000))
    result = wasmgate("invoke-local", str(bundle_dir), "--method", "POST", "--path", "/upload",
                      "--form", "label=holiday", "--file", f"file={upload}")
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout) == {"filename": "photo.png", "size": 100_000, "label": "holiday", "content_type": "image/png"}


def test_invoke_local_binary_response_and_query(wasmgate, bundle_dir):
    png = wasmgate("invoke-local", str(bundle_dir), "--path", "/png")
    assert png.stdout.startswith(b"\x89PNG") and png.stdout.endswith(bytes(range(256)))
    hello = wasmgate("invoke-local", str(bundle_dir), "--path", "/hello/ann?times=2")
    assert json.loads(hello.stdout) == {"message": "hello ann hello ann"}


def test_invoke_local_by_hash_and_errors(wasmgate, bundle_dir):
    bundle_hash = json.loads((bundle_dir / "manifest.json").read_text())["bundle_hash"]
    assert wasmgate("invoke-local", bundle_hash, "--path", "/missing").stdout.startswith(b'{"error":{"code":"NOT_FOUND"')
    unknown = wasmgate("invoke-local", "no-such-bundle")
    assert unknown.returncode == 2 and b"no bundle" in unknown.stderr
    bad_json = wasmgate("invoke-local", bundle_hash, "--json", "{nope")
    assert bad_json.returncode != 0 and b"not valid JSON" in bad_json.stderr and b"Traceback" not in bad_json.stderr


def test_build_error_is_readable(wasmgate, tmp_path):
    source = tmp_path / "app.py"
    source.write_text("app = 1\n")
    result = wasmgate("build", str(source))
    assert result.returncode == 1
    assert b"must define `app = wasmgate.App()`" in result.stderr
    assert b"Traceback" not in result.stderr.split(b"guest_traceback")[0]


def test_invoke_local_takes_the_short_hash_build_prints(wasmgate, bundle_dir):
    bundle_hash = json.loads((bundle_dir / "manifest.json").read_text())["bundle_hash"]
    result = wasmgate("invoke-local", bundle_hash[:12], "--path", "/hello/ann")
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout) == {"message": "hello ann"}
    too_short = wasmgate("invoke-local", bundle_hash[:4], "--path", "/hello/ann")
    assert too_short.returncode == 2 and b"no bundle" in too_short.stderr


@pytest.mark.parametrize("args, says", [
    (("build", str(EXAMPLE), "-r", "missing.txt"), b"no such file: missing.txt"),
    (("deploy", str(EXAMPLE), "-r", "missing.txt"), b"no such file: missing.txt"),
    (("deploy", str(EXAMPLE), "--rate-limit", "abc"), b"takes N/SECONDS"),
    (("deploy", str(EXAMPLE), "--rate-limit", "10/abc"), b"takes N/SECONDS"),
    (("deploy", str(EXAMPLE), "--rate-limit", "0/60"), b"at least 1 request"),
    (("deploy", str(EXAMPLE), "--memory-mb", "x"), b"not a whole number"),
    (("invoke-local", "BUNDLE", "--timeout-ms", "0"), b"must be at least 1"),
    (("invoke-local", "BUNDLE", "--memory-mb", "1"), b"memory limit must be at least 16 MiB"),
    (("invoke-local", "BUNDLE", "--data", "@missing"), b"--data @missing: No such file or directory"),
])
def test_a_users_mistake_is_one_line_not_a_traceback(wasmgate, bundle_dir, args, says):
    result = wasmgate(*[str(bundle_dir) if arg == "BUNDLE" else arg for arg in args])
    assert result.returncode in (1, 2), (result.returncode, result.stderr.decode())
    assert says in result.stderr and b"Traceback" not in result.stderr, result.stderr.decode()


def test_version(wasmgate):
    import importlib.metadata

    result = wasmgate("--version")
    assert result.returncode == 0 and result.stdout.decode().strip() == f"wasmgate {importlib.metadata.version('wasmgate')}"
