"""`wasmgate build` and `wasmgate invoke-local`, run as a user would, in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import EXAMPLE
from gateway_support import ADMIN_TOKEN, HELLO_V2, ServerProcess, data_dir_sharing_store, server_env


@pytest.fixture(scope="module")
def wasmgate(data_dir: Path, build_app):
    build_app(EXAMPLE)  # built once per session; the CLI finds it in the same store
    env = server_env(WASMGATE_DATA_DIR=str(data_dir))  # none of the caller's other WASMGATE_* settings

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
    encoded = wasmgate("invoke-local", str(bundle_dir), "--path", "/hello/J%C3%BCrgen%20O?times=1")
    assert json.loads(encoded.stdout) == {"message": "hello Jürgen O"}  # decoded, as the gateway does


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
    (("rollback", "hello", "latest"), b"not a whole number"),
    (("logs", "hello", "-n", "0"), b"must be at least 1"),
    (("jobs", "--state", "done"), b"invalid choice: 'done'"),
    (("jobs", "--limit", "x"), b"not a whole number"),
    (("pause",), b"required: name"),
    (("resume",), b"required: name"),
    (("accounts",), b"required: ACTION"),
    (("accounts", "create"), b"required: name"),
    (("accounts", "rotate"), b"required: id"),
    (("dev", "no-such-folder"), b"error: no-such-folder is not a folder"),
    (("serve", "--apis-dir", "no-such-folder"), b"error: --apis-dir no-such-folder is not a folder"),
    (("apis",), b"error: set WASMGATE_TOKEN"),
])
def test_a_users_mistake_is_one_line_not_a_traceback(wasmgate, bundle_dir, args, says):
    result = wasmgate(*[str(bundle_dir) if arg == "BUNDLE" else arg for arg in args])
    assert result.returncode in (1, 2), (result.returncode, result.stderr.decode())
    assert says in result.stderr and b"Traceback" not in result.stderr, result.stderr.decode()


def test_version(wasmgate):
    import importlib.metadata

    result = wasmgate("--version")
    assert result.returncode == 0 and result.stdout.decode().strip() == f"wasmgate {importlib.metadata.version('wasmgate')}"


def test_the_command_line_starts_without_the_servers_libraries():
    """`wasmgate --help` and the remote commands do not import FastAPI or the database layer
    (~0.4 s of a 0.8 s start): only the commands that use them do."""
    heavy = ("fastapi", "starlette", "sqlalchemy", "alembic", "uvicorn")
    probe = f"import sys, cli.main; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout


@pytest.fixture(scope="module")
def remote(wasmgate, build_app, bundle_store, tmp_path_factory):
    """The remote commands against a real gateway (one process), with the example deployed as
    `hello` and version 2 of it (both built in the session store already)."""
    build_app(HELLO_V2)
    tmp = tmp_path_factory.mktemp("remote")
    server = ServerProcess(data_dir_sharing_store(tmp / "data", bundle_store), tmp / "server.log", args=("--workers", "1"))
    server.start()
    env = server_env(WASMGATE_URL=server.url, WASMGATE_ADMIN_TOKEN=ADMIN_TOKEN)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, capture_output=True, timeout=600,
                              stdin=subprocess.DEVNULL)

    run.env, run.server, run.tmp = env, server, tmp
    yield run
    server.stop()


def _ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0 and b"Traceback" not in result.stderr, result.stderr.decode()
    return result.stdout.decode()


def _refused(result: subprocess.CompletedProcess, line: str) -> None:
    assert result.returncode == 1 and result.stderr.decode() == line + "\n", result.stderr.decode()


def test_remote_commands_manage_an_api(remote):
    deployed = _ok(remote("deploy", str(EXAMPLE)))
    endpoint = deployed.split("endpoint: ", 1)[1].split()[0]
    key = deployed.split("api key:  ", 1)[1].split()[0]
    v2 = remote.tmp / "app.py"
    v2.write_text(HELLO_V2)
    assert "version:  2" in _ok(remote("deploy", str(v2), "--name", "hello"))
    assert "hello" in _ok(remote("apis")).splitlines()[1]

    info = _ok(remote("info", "hello"))
    assert info.startswith("hello (") and "version 2, active" in info and "GET     /version" in info
    assert "hello now serves version 1" in _ok(remote("rollback", "hello", "1"))
    assert httpx.get(endpoint + "/version", headers={"X-API-Key": key}).status_code == 404
    _refused(remote("rollback", "hello", "9"), "error: NOT_FOUND: API hello has no version 9")
    _refused(remote("info", "nope"), "error: NOT_FOUND: no API nope")

    assert _ok(remote("pause", "hello")).strip() == "hello: paused"
    assert httpx.get(endpoint + "/hello/ann", headers={"X-API-Key": key}).status_code != 200
    assert _ok(remote("resume", "hello")).strip() == "hello: active"
    assert httpx.get(endpoint + "/hello/ann", headers={"X-API-Key": key}).json() == {"message": "hello ann"}

    assert "GET /hello/ann  200 OK" in _ok(remote("logs", "hello"))
    assert _ok(remote("usage", "hello")).startswith("HOUR")
    new_key = _ok(remote("keys", "hello", "--new"))
    assert "(shown only now)" in new_key and new_key.split()[2] in _ok(remote("keys", "hello"))
    assert _ok(remote("jobs", "--api", "hello", "--state", "queued")).strip() == "no jobs"

    _refused(remote("delete", "hello"), "error: delete API hello, its versions and its keys: add --yes to confirm "
                                         "(no terminal to ask on)")
    assert _ok(remote("delete", "hello", "--yes")).strip() == "deleted hello"
    _refused(remote("info", "hello"), "error: NOT_FOUND: no API hello")


def test_logs_follow_prints_calls_as_they_happen_until_ctrl_c(remote):
    deployed = _ok(remote("deploy", str(EXAMPLE), "--name", "followed"))
    endpoint = deployed.split("endpoint: ", 1)[1].split()[0]
    key = deployed.split("api key:  ", 1)[1].split()[0]
    out = remote.tmp / "follow.out"
    with open(out, "wb") as sink:
        follower = subprocess.Popen([sys.executable, "-m", "cli.main", "logs", "followed", "--follow"], env=remote.env,
                                    stdout=sink, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while b"/missing" not in out.read_bytes() and time.monotonic() < deadline:  # until the stream is open
                httpx.get(endpoint + "/missing", headers={"X-API-Key": key})
                time.sleep(0.5)
        finally:
            follower.send_signal(signal.SIGINT)
            follower.wait(30)
    printed = out.read_text()
    assert "GET /missing  404 OK" in printed, printed
    assert follower.returncode == 0 and "Traceback" not in printed, printed


def test_accounts(remote):
    created = _ok(remote("accounts", "create", "ann"))
    account_id = created.split()[1]
    assert "token:   wga_" in created
    assert "ann" in _ok(remote("accounts", "list"))
    token = created.split("token:   ", 1)[1].split()[0]
    as_ann = subprocess.run([sys.executable, "-m", "cli.main", "apis"], capture_output=True, timeout=120,
                            env={**remote.env, "WASMGATE_TOKEN": token}, stdin=subprocess.DEVNULL)
    # WASMGATE_TOKEN: the account sees only its own APIs (none), not the admin's.
    assert "followed" in _ok(remote("apis")) and "followed" not in _ok(as_ann)
    assert _ok(remote("accounts", "rotate", account_id)).startswith("token: wga_")
    taken = remote("accounts", "create", "ann")
    assert taken.returncode == 1 and taken.stderr.startswith(b"error: CONFLICT: ") and taken.stderr.count(b"\n") == 1
    _refused(remote("accounts", "delete", account_id), f"error: delete account {account_id}: add --yes to confirm "
                                                       "(no terminal to ask on)")
    assert _ok(remote("accounts", "delete", account_id, "--yes")).strip() == f"deleted account {account_id}"
    assert "no accounts" in _ok(remote("accounts", "list"))


def test_a_setting_out_of_range_is_named_without_a_traceback(tmp_path):
    env = server_env(WASMGATE_DATA_DIR=str(tmp_path / "data"), WASMGATE_LOADED_MB="-1", WASMGATE_POOL_FILLERS="lots")
    result = subprocess.run([sys.executable, "-m", "cli.main", "serve", "--port", "1"], env=env, capture_output=True,
                            timeout=120, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "WASMGATE_LOADED_MB=-1: Input should be greater than or equal to 0" in result.stderr
    assert "WASMGATE_POOL_FILLERS=lots: Input should be a valid integer" in result.stderr
