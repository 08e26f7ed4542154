"""Faults: what a crash, a damaged file or a full disk does to deployed APIs, and that it stays contained.

1. `kill -9` of a real gateway (`wasmgate serve`, two worker processes, its own data dir and
   store): while a deploy's build is in componentize-py, while a hot swap's build compiles,
   with calls in flight. After a restart on the same data dir every listed API runs its
   active version from an intact bundle, an answered deploy or hot swap is complete, an
   unanswered one left nothing (no API, no version, no bundle, no temporary directory or
   file), no build process outlives the gateway, and calls succeed. Leftovers a kill can
   leave at moments no test can aim at (a dead process's build and fetch directories, a
   half-written precompiled file, a bundle directory without manifest) are planted and are
   removed at start, while a live process's are kept.
2. Damaged files: a precompiled `.cwasm` that does not match its recorded sha256 is never
   deserialized and is compiled again from the component; a damaged component (its stored,
   compressed file, or what that decompresses to), python file or manifest is never run: loading it raises `BundleDamaged` (SANDBOX_ERROR, reason
   bundle-damaged), found once per process and not per call. In a gateway that API is listed
   as unavailable with the reason and answers that typed 500, the other APIs serve, and
   deploying it again repairs it; a rollback to a version whose bundle is damaged is refused
   (409) before anything switches.
3. A full disk (a 200 MB tmpfs mounted over the data dir, filled with fallocate): a build
   that runs out of space in componentize-py, or later while compiling, fails with
   BUILD_FAILED saying no space is left (no traceback, no host paths), leaves nothing behind,
   and the gateway keeps serving the API it has.

Bundles that a test does not need to build fresh are built once per session and copied into
a private store (never damaged in place: the session's store is shared).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import httpx
import pytest
import zstandard
from starlette.testclient import TestClient
from wasmtime.component import Component

import runtime.bundle as bundle_module
from conftest import EXAMPLE
from gateway.http.app import create_app
from gateway.services import prepare_data_dir
from gateway.settings import Settings
from gateway_support import ADMIN, ADMIN_TOKEN, HELLO_V2, SOURCES, ServerProcess, deploy_request
from process_support import processes
from runtime import Bundle, BundleStore, Limits, Runtime, SandboxRequest
from runtime.bundle import DIGEST_SUFFIX, BundleDamaged, file_sha256
from runtime.engine import fingerprint

HELLO_X = {"message": "hello x"}
DEADLINE_S = 120


# -- bundles in private stores -------------------------------------------------------------------


@pytest.fixture(scope="module")
def hello(build_app) -> Bundle:
    return build_app(EXAMPLE)


@pytest.fixture(scope="module")
def hello_v2(build_app, tmp_path_factory) -> Bundle:
    """The example's version 2, built as a JSON deploy writes it (app.py), like gateway_sources."""
    path = tmp_path_factory.mktemp("hello-v2") / "app.py"
    path.write_text(HELLO_V2)
    return build_app(path)


def private_store(root: Path, session: BundleStore, *bundles: Bundle) -> BundleStore:
    """A new store holding copies (not links) of `bundles`, their precompiled files (not their
    deltas: a removed file is compiled again), the bases they were built from, the references
    their components are stored against and the stdlib."""
    store = BundleStore(root)
    for bundle in bundles:
        shutil.copytree(bundle.path, store.bundle_dir(bundle.hash))
        base = bundle.manifest.get("base")
        if base and not (store.root / "bases" / base).exists():  # a build of the same dependencies reuses it
            shutil.copytree(session.root / "bases" / base, store.root / "bases" / base)
        for artifact in session.compiled_artifacts(bundle):
            for path in (artifact, artifact.with_name(artifact.name + DIGEST_SUFFIX)):
                if path.is_file():
                    shutil.copy2(path, store.compiled_dir / path.name)
        reference = session.component_reference(bundle)
        if reference is not None:
            shutil.copy2(reference, store.references.path(reference.name))
        for layer in session.layer_files(bundle):  # and the layers, precompiled: no 6 s compile per store
            shutil.copy2(layer, store.layers_dir / layer.name)
            for path in session.compiled_dir.glob(f"{layer.stem}-*"):
                shutil.copy2(path, store.compiled_dir / path.name)
    stdlib = session.stdlib_dir()
    shutil.copytree(stdlib, store.root / stdlib.name)
    return store


def artifact_of(store: BundleStore, bundle: Bundle) -> Path:
    return store.compiled_dir / f"{bundle.manifest['component_sha256']}-{fingerprint()}.cwasm"


def recorded_digest(artifact: Path) -> str:
    return artifact.with_name(artifact.name + DIGEST_SUFFIX).read_text().strip()


def flip_a_byte(path: Path) -> None:
    """Change one byte in the middle, in place: same size, so only a hash can tell."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


def spy_on_deserialize(monkeypatch) -> list[str]:
    """The sha256 of every file wasmtime is asked to deserialize, at the moment it is asked."""
    seen: list[str] = []
    original = Component.deserialize_file

    def deserialize_file(engine, path):
        seen.append(file_sha256(Path(path)))
        return original(engine, path)

    monkeypatch.setattr(Component, "deserialize_file", staticmethod(deserialize_file))
    return seen


def call_bundle(rt: Runtime, store: BundleStore, bundle_hash: str, path: str = "/hello/x") -> dict:
    return json.loads(rt.invoke(store.get(bundle_hash), SandboxRequest("GET", path), Limits()).response.body)


# -- 2. damaged files, loaded by a fresh runtime ---------------------------------------------------


def test_a_precompiled_file_that_does_not_match_its_sha256_is_compiled_again_never_deserialized(
    hello, bundle_store, tmp_path, monkeypatch
):
    store = private_store(tmp_path / "store", bundle_store, hello)
    artifact = artifact_of(store, hello)
    flip_a_byte(artifact)  # same size: a size check would not see it
    damaged = file_sha256(artifact)
    assert damaged != recorded_digest(artifact)
    deserialized = spy_on_deserialize(monkeypatch)
    rt = Runtime(store)
    try:
        assert call_bundle(rt, store, hello.hash) == HELLO_X
    finally:
        rt.close()
    assert damaged not in deserialized
    assert deserialized == [file_sha256(artifact)] == [recorded_digest(artifact)]  # compiled again, recorded
    assert not list(store.compiled_dir.glob("*.tmp"))


# Each: how the bundle is damaged, and the file the error must name.
DAMAGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "component truncated": (lambda d: truncate(d / "component.wasm.zst"), "component.wasm.zst"),
    "component byte changed": (lambda d: flip_a_byte(d / "component.wasm.zst"), "component.wasm.zst"),
    "python file changed": (lambda d: flip_a_byte(d / "python/0/hello.py"), "python/0/hello.py"),
    "python file missing": (lambda d: (d / "python/2/wasmgate/_json.py").unlink(), "python/2/wasmgate/_json.py"),
    "python file added": (lambda d: (d / "python/0/sitecustomize.py").write_text("x = 1\n"), "python/0/sitecustomize.py"),
    "manifest truncated": (lambda d: truncate(d / "manifest.json"), "manifest.json"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_bundle_is_reported_never_run_and_the_others_serve(
    damage, hello, hello_v2, bundle_store, tmp_path, monkeypatch
):
    store = private_store(tmp_path / "store", bundle_store, hello, hello_v2)
    harm, named = DAMAGES[damage]
    harm(store.bundle_dir(hello.hash))
    deserialized = spy_on_deserialize(monkeypatch)
    checks: list[str] = []
    check = bundle_module.damage
    monkeypatch.setattr(bundle_module, "damage", lambda b: checks.append(b.hash) or check(b))
    rt = Runtime(store)
    try:
        for _ in range(3):  # at start, then two calls
            with pytest.raises(BundleDamaged) as caught:
                call_bundle(rt, store, hello.hash)
            error = caught.value
            assert (error.code, error.reason) == ("SANDBOX_ERROR", "bundle-damaged")
            assert named in error.detail and hello.hash[:12] in error.detail
            assert str(tmp_path) not in error.detail + error.message
        assert deserialized == []  # nothing of the damaged bundle reached wasmtime
        assert checks.count(hello.hash) <= 1  # checked once per process, not per call
        assert call_bundle(rt, store, hello_v2.hash, "/version") == {"version": 2}
    finally:
        rt.close()


def refused_by_a_new_runtime(store: BundleStore, bundle_hash: str) -> BundleDamaged:
    """What a new runtime raises when asked to run the bundle (it must refuse it)."""
    rt = Runtime(store)
    try:
        with pytest.raises(BundleDamaged) as caught:
            call_bundle(rt, store, bundle_hash)
    finally:
        rt.close()
    return caught.value


def rewrite_manifest(bundle_dir: Path, change: Callable[[dict], None]) -> None:
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    change(manifest)
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest))


def test_a_compressed_component_that_is_not_its_recorded_component_is_never_compiled(
    hello, bundle_store, tmp_path, monkeypatch
):
    """The stored file matches its own recorded digest (a writer that recorded what it wrote)
    but decompresses to other bytes: compiling checks what it decompressed, too."""
    store = private_store(tmp_path / "store", bundle_store, hello)
    directory = store.bundle_dir(hello.hash)
    other = zstandard.ZstdCompressor().compress(b"\0asm\x0d\0\x01\0 not this bundle's component")
    (directory / "component.wasm.zst").write_bytes(other)

    def record(manifest: dict) -> None:
        manifest["component_zst_sha256"], manifest["component_zst_bytes"] = hashlib.sha256(other).hexdigest(), len(other)

    rewrite_manifest(directory, record)
    artifact_of(store, hello).unlink()  # so the component must be compiled again
    deserialized = spy_on_deserialize(monkeypatch)
    refused = refused_by_a_new_runtime(store, hello.hash)
    assert "component.wasm.zst does not match" in refused.detail and hello.hash[:12] in refused.detail
    assert deserialized == [] and not artifact_of(store, hello).exists()


def test_a_bundle_of_format_3_with_its_component_uncompressed_still_runs_and_is_checked(
    hello, bundle_store, tmp_path
):
    store = private_store(tmp_path / "store", bundle_store, hello)
    directory = store.bundle_dir(hello.hash)
    (directory / "component.wasm").write_bytes(bundle_store.component_wasm(hello))
    (directory / "component.wasm.zst").unlink()

    def as_format_3(manifest: dict) -> None:
        manifest["format"] = 3
        del manifest["component_zst_sha256"], manifest["component_zst_bytes"]
        manifest.pop("component_reference", None)

    rewrite_manifest(directory, as_format_3)
    artifact_of(store, hello).unlink()  # compiled from the uncompressed file
    rt = Runtime(store)
    try:
        assert call_bundle(rt, store, hello.hash) == HELLO_X
    finally:
        rt.close()
    assert store.get(hello.hash).component_path.name == "component.wasm"
    flip_a_byte(directory / "component.wasm")
    assert "component.wasm does not match" in refused_by_a_new_runtime(store, hello.hash).detail


LAYER_HARMS: dict[str, Callable[[Path], None]] = {"missing": Path.unlink, "byte changed": flip_a_byte}


@pytest.mark.parametrize("harm", list(LAYER_HARMS))
def test_a_damaged_layer_is_reported_for_every_bundle_importing_it_and_adding_it_again_repairs(
    harm, hello, hello_v2, bundle_store, tmp_path, monkeypatch
):
    store = private_store(tmp_path / "store", bundle_store, hello, hello_v2)
    shared = set(hello.manifest["layers"]) & set(hello_v2.manifest["layers"])
    assert shared  # two apps import the same compiled CPython
    layer = store.layer_path(sorted(shared)[0])
    original = layer.read_bytes()
    LAYER_HARMS[harm](layer)
    rt = Runtime(store)
    try:
        for bundle_hash in (hello.hash, hello_v2.hash):
            with pytest.raises(BundleDamaged) as caught:
                call_bundle(rt, store, bundle_hash)
            assert layer.stem[:12] in caught.value.detail and "layer" in caught.value.detail
    finally:
        rt.close()
    store.add_layer(original)  # what a build of either app does
    rt = Runtime(store)
    try:
        assert call_bundle(rt, store, hello.hash) == HELLO_X
    finally:
        rt.close()


def test_a_layer_is_hashed_once_for_all_the_bundles_importing_it_until_its_file_changes(
    hello, hello_v2, bundle_store, tmp_path, monkeypatch
):
    store = private_store(tmp_path / "store", bundle_store, hello, hello_v2)
    layer = store.layer_path(hello.manifest["layers"][0])
    hashed: list[Path] = []
    original = bundle_module.file_sha256
    monkeypatch.setattr(bundle_module, "file_sha256", lambda path: hashed.append(Path(path)) or original(path))
    store.verify(store.get(hello.hash))
    store.verify(store.get(hello_v2.hash))
    assert hashed.count(layer) == 1
    flip_a_byte(layer)
    with pytest.raises(BundleDamaged, match="layer"):
        store.verify(store.get(hello.hash))


def test_a_restart_skips_hashing_a_bundle_found_intact_until_any_of_its_files_is_written(
    hello, bundle_store, tmp_path, monkeypatch
):
    store = private_store(tmp_path / "store", bundle_store, hello)
    checks: list[str] = []
    verify = store.verify
    monkeypatch.setattr(store, "verify", lambda bundle: (checks.append(bundle.hash), verify(bundle))[1])

    def restart_and_call() -> dict:
        rt = Runtime(store)
        try:
            return call_bundle(rt, store, hello.hash)
        finally:
            rt.close()

    assert restart_and_call() == HELLO_X and checks == [hello.hash]  # first seen: hashed
    assert restart_and_call() == HELLO_X and checks == [hello.hash]  # unchanged since: not hashed
    app = store.bundle_dir(hello.hash) / "python/0/hello.py"
    before = app.stat()
    flip_a_byte(app)
    os.utime(app, ns=(before.st_atime_ns, before.st_mtime_ns))  # same size, same mtime: only ctime moved
    with pytest.raises(BundleDamaged, match="python/0/hello.py"):
        restart_and_call()
    assert checks == [hello.hash, hello.hash]


def test_what_builds_do_to_a_stored_bundle_does_not_make_the_next_start_hash_it(hello, bundle_store, tmp_path, monkeypatch):
    """A build that reuses the shared layer or finds the bundle already stored marks them used
    (for the store's collector) without writing their files; and a record made while the
    bundle was being built still holds after its directory moved into place. (A layer's
    renewed mtime once sent every bundle importing it through hashing at the next start.)"""
    store = private_store(tmp_path / "store", bundle_store, hello)
    moved = store.root / "building" / "bundle"
    shutil.copytree(store.bundle_dir(hello.hash), moved)
    shutil.rmtree(store.bundle_dir(hello.hash))
    compiled = store.compiled_path(hello, fingerprint())
    store.record_intact(store.open(moved), compiled)  # what the build process's load records
    moved.rename(store.bundle_dir(hello.hash))  # what `store.add` does with the finished bundle
    checks: list[str] = []
    verify = store.verify
    monkeypatch.setattr(store, "verify", lambda bundle: (checks.append(bundle.hash), verify(bundle))[1])
    store.add_layer(store.layer_path(hello.manifest["layers"][0]).read_bytes())  # another build
    store.touch(hello.hash)  # a deploy of the same source
    rt = Runtime(store)
    try:
        assert call_bundle(rt, store, hello.hash) == HELLO_X
    finally:
        rt.close()
    assert checks == []


# -- 1. leftovers of a process that died mid-way ---------------------------------------------------


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_leftovers_of_a_dead_process_are_removed_at_start_and_a_live_ones_kept(hello, bundle_store, tmp_path):
    data_dir = tmp_path / "data"
    store = private_store(data_dir / "store", bundle_store, hello)
    dead = dead_pid()
    killed_build = store.root / f"build-{dead}-k1ll3d00"
    shutil.copytree(hello.path, killed_build / "bundle")  # finished, killed before its rename
    (store.root / f"fetch-{dead}-k1ll3d01").mkdir()
    artifact = artifact_of(store, hello)
    half = store.compiled_dir / f"{artifact.name}.{dead}.k1ll3d02.tmp"
    half.write_bytes(artifact.read_bytes()[: 1 << 20])
    no_manifest = store.root / "bundles" / ("f" * 64)
    (no_manifest / "python" / "0").mkdir(parents=True)
    live_build = store.temporary_dir("build")  # this process's: it is alive
    live_tmp = store.compiled_dir / f"{artifact.name}.{os.getpid()}.l1ve0000.tmp"
    live_tmp.write_bytes(b"being written")

    prepare_data_dir(Settings(data_dir=data_dir, admin_token=ADMIN_TOKEN))

    assert not killed_build.exists() and not (store.root / f"fetch-{dead}-k1ll3d01").exists()
    assert not half.exists() and not no_manifest.exists()
    assert live_build.is_dir() and live_tmp.is_file()
    assert sorted(p.name for p in (store.root / "bundles").iterdir()) == [hello.hash]
    store.verify(store.get(hello.hash))


def test_a_bundle_directory_without_manifest_does_not_block_installing_that_bundle(hello, bundle_store, tmp_path):
    store = private_store(tmp_path / "store", bundle_store, hello)
    staging = store.temporary_dir("build") / "bundle"
    shutil.copytree(store.bundle_dir(hello.hash), staging)
    shutil.rmtree(store.bundle_dir(hello.hash))
    (store.bundle_dir(hello.hash) / "python" / "0").mkdir(parents=True)  # half a copy, no manifest
    assert not store.has(hello.hash)
    installed = store.add(staging, hello.hash)
    store.verify(installed)
    assert installed.path == store.bundle_dir(hello.hash) and not staging.exists()


# -- 1. kill -9 of a real gateway --------------------------------------------------------------------


def unique_source(tag: str) -> str:
    """A source no store has a bundle for: its deploy builds for real."""
    return (
        "from wasmgate import App\n\napp = App()\n\n\n@app.get('/tag')\ndef tag():\n"
        f"    return {{'tag': {tag!r}}}\n# {secrets.token_hex(16)}\n"
    )


def wait_until(condition: Callable[[], object], what: str, timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def process_tree(root: int) -> set[int]:
    table, tree, grew = processes(), {root}, True
    while grew:
        children = {pid for pid, (parent, _, _) in table.items() if parent in tree} - tree
        tree |= children
        grew = bool(children)
    return tree


def running(pids: set[int]) -> set[int]:
    table = processes()
    return {pid for pid in pids if pid in table and table[pid][1] != "Z"}


def builds_running(data_dir: Path) -> set[int]:
    """componentize-py processes working in `data_dir`'s store (a build process itself is in
    its gateway's process tree)."""
    where = str(data_dir.resolve())
    return {
        pid for pid, (_, state, cmdline) in processes().items()
        if state != "Z" and "componentize" in cmdline and where in cmdline
    }


class CallStream(threading.Thread):
    """Calls `GET /hello/x` of an API over and over, recording answers and transport errors."""

    def __init__(self, url: str, api: dict) -> None:
        super().__init__(daemon=True)
        self.url, self.api = url, api
        self.answers: list[tuple[int, str]] = []
        self.cut: list[str] = []  # calls the kill cut off (or that found no server)
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set():
                try:
                    response = client.get(self.api["endpoint"] + "/hello/x", headers={"X-API-Key": self.api["api_key"]})
                    self.answers.append((response.status_code, response.text))
                except httpx.HTTPError as error:
                    self.cut.append(repr(error))
                time.sleep(0.01)


class StreamedDeploy(threading.Thread):
    """A deploy or hot swap with its build log streamed (NDJSON): the lines seen so far, and the
    final answer if one came."""

    def __init__(self, url: str, method: str, path: str, body: dict) -> None:
        super().__init__(daemon=True)
        self.url, self.method, self.path, self.body = url, method, path, body
        self.lines: list[str] = []
        self.final: dict | None = None
        self.error: Exception | None = None

    def run(self) -> None:
        headers = {**ADMIN, "Accept": "application/x-ndjson"}
        try:
            with (
                httpx.Client(base_url=self.url, timeout=300) as client,
                client.stream(self.method, self.path, headers=headers, json=self.body) as response,
            ):
                for line in response.iter_lines():
                    if line.strip():
                        entry = json.loads(line)
                        if "log" in entry:
                            self.lines.append(entry["log"])
                        else:
                            self.final = entry
        except httpx.HTTPError as error:
            self.error = error

    def saw(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))


def kill_9(server: ServerProcess) -> None:
    """SIGKILL `serve`; return once none of its processes (workers, builds) runs any more: at
    once, as they die with it (a build left running would take several seconds more)."""
    assert server.process is not None
    tree = process_tree(server.process.pid)
    server.kill()
    wait_until(lambda: not running(tree) and not builds_running(server.data_dir), "the gateway's processes to die", 4)


def assert_consistent(server: ServerProcess) -> list[dict]:
    """Every listed API is active on a version whose bundle (like every version's) is in the
    store, intact, and loads; no bundle in the store is damaged or half there; nothing
    temporary is left. Returns the listed APIs."""
    store = BundleStore(server.data_dir / "store")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        listed = client.get("/v1/apis", headers=ADMIN)
        assert listed.status_code == 200, listed.text
        apis = listed.json()["apis"]
        rt = Runtime(store)
        try:
            for api in apis:
                described = client.get(f"/v1/apis/{api['id']}", headers=ADMIN)
                assert described.status_code == 200, described.text
                detail = described.json()
                assert detail["status"] == "active", detail
                [active] = [v for v in detail["versions"] if v["active"]]
                assert active["version"] == detail["active_version"]
                for version in detail["versions"]:
                    store.verify(store.get(version["bundle_hash"]))
                rt.load(store.get(active["bundle_hash"]))
        finally:
            rt.close()
    for directory in (store.root / "bundles").iterdir():
        store.verify(store.get(directory.name))
    leftovers = [p.name for p in store.root.iterdir() if p.name.split("-")[0] in ("build", "fetch", "discard")]
    assert leftovers == [] and list(store.compiled_dir.glob("*.tmp")) == []
    return apis


def call_api(server: ServerProcess, api: dict, path: str = "/hello/x") -> httpx.Response:
    return httpx.get(server.url + api["endpoint"] + path, headers={"X-API-Key": api["api_key"]}, timeout=30)


crashed: dict = {}


@pytest.fixture(scope="module")
def crash_site(hello, bundle_store, tmp_path_factory):
    """A gateway of two worker processes on its own data dir (a private store holding the example)."""
    root = tmp_path_factory.mktemp("crash-site")
    private_store(root / "data" / "store", bundle_store, hello)
    server = ServerProcess(root / "data", root / "server.log")
    server.start()
    yield server
    server.stop()


def test_kill_9_mid_deploy_with_calls_in_flight(crash_site):
    server = crash_site
    created = httpx.post(server.url + "/v1/apis", headers=ADMIN, timeout=120, **deploy_request("hello", SOURCES["hello"]))
    assert created.status_code == 201, created.text
    crashed["hello"] = api = created.json()

    calls = [CallStream(server.url, api) for _ in range(2)]
    for stream in calls:
        stream.start()
    # Its module takes a minute to import, so the build is still loading it when the gateway dies.
    spinning = unique_source("doomed") + "import time\n_t = time.monotonic()\nwhile time.monotonic() - _t < 60:\n    pass\n"
    deploy = StreamedDeploy(server.url, "POST", "/v1/apis", {"name": "doomed", "source": spinning})
    deploy.start()
    wait_until(lambda: deploy.saw("loading your module into the base"), "the deploy's build to load its module")
    wait_until(lambda: sum(len(s.answers) for s in calls) >= 10, "calls answered during the build")
    kill_9(server)  # no build process survives it
    for stream in calls:
        stream.stop.set()
        stream.join()
    deploy.join(30)
    assert deploy.final is None and deploy.error is not None  # never answered
    answered = [answer for stream in calls for answer in stream.answers]
    assert answered and set(answered) == {(200, json.dumps(HELLO_X, separators=(",", ":")))}

    server.start()
    apis = assert_consistent(server)
    assert [a["name"] for a in apis] == ["hello"]  # the answered deploy is there, the unanswered one is not
    assert call_api(server, api).json() == HELLO_X
    assert "removed what an interrupted build or fetch left in the bundle store: build-" in server.log_path.read_text()


def test_kill_9_mid_hot_swap_keeps_the_answered_versions(crash_site):
    server = crash_site
    api = crashed["hello"]
    swapped = httpx.put(
        f"{server.url}/v1/apis/{api['id']}", headers=ADMIN, timeout=120, **deploy_request("hello", SOURCES["hello"])
    )
    assert swapped.status_code == 200 and swapped.json()["active_version"] == 2, swapped.text

    calls = CallStream(server.url, api)
    calls.start()
    swap = StreamedDeploy(server.url, "PUT", f"/v1/apis/{api['id']}", {"source": unique_source("swap")})
    swap.start()
    wait_until(lambda: swap.saw("compiling for this host"), "the hot swap's build to compile its component")
    kill_9(server)
    calls.stop.set()
    calls.join()
    swap.join(30)
    assert swap.final is None
    assert calls.answers and {status for status, _ in calls.answers} == {200}

    server.start()
    assert_consistent(server)
    detail = httpx.get(f"{server.url}/v1/apis/{api['id']}", headers=ADMIN).json()
    assert detail["active_version"] == 2 and [v["version"] for v in detail["versions"]] == [1, 2]
    assert call_api(server, api).json() == HELLO_X


# -- 2. a damaged bundle in a running gateway --------------------------------------------------------


def test_a_gateway_reports_a_damaged_bundle_serves_the_others_and_a_redeploy_repairs_it(
    hello, hello_v2, bundle_store, tmp_path
):
    data_dir = tmp_path / "data"
    store = private_store(data_dir / "store", bundle_store, hello, hello_v2)
    server = ServerProcess(data_dir, tmp_path / "server.log")
    server.start()
    try:
        with httpx.Client(base_url=server.url, headers=ADMIN, timeout=120) as admin:
            good = admin.post("/v1/apis", **deploy_request("hello", SOURCES["hello"]))
            bad = admin.post("/v1/apis", json={"name": "fragile", "source": HELLO_V2})
            assert good.status_code == bad.status_code == 201, (good.text, bad.text)
            good, bad = good.json(), bad.json()
            assert bad["bundle_hash"] == hello_v2.hash
            server.stop()

            flip_a_byte(store.bundle_dir(hello_v2.hash) / "python" / "0" / "app.py")
            artifact = artifact_of(store, hello)
            truncate(artifact)
            server.start()

            # The healthy API runs, its precompiled file compiled again (by one process of two).
            assert call_api(server, good).json() == HELLO_X
            assert file_sha256(artifact) == recorded_digest(artifact)
            # The damaged one: listed as unavailable with the reason, and a typed 500 for callers.
            answer = call_api(server, bad, "/version")
            assert answer.status_code == 500
            assert answer.json()["error"] == {
                "code": "SANDBOX_ERROR", "message": BundleDamaged.message, "details": {"reason": "bundle-damaged"}
            }
            listed = {api["name"]: api for api in admin.get("/v1/apis").json()["apis"]}
            assert listed["hello"]["status"] == "active"
            assert listed["fragile"]["status"] == "unavailable"
            assert listed["fragile"]["error"]["reason"] == "bundle-damaged"
            assert "python/0/app.py" in listed["fragile"]["error"]["detail"]
            described = admin.get(f"/v1/apis/{bad['id']}")
            assert described.status_code == 200 and described.json()["status"] == "unavailable"
            assert str(tmp_path) not in answer.text + described.text

            # Deploying it again builds the damaged bundle anew; every process serves it.
            repaired = admin.put(f"/v1/apis/{bad['id']}", json={"source": HELLO_V2})
            assert repaired.status_code == 200, repaired.text
            assert repaired.json()["status"] == "active" and repaired.json()["active_version"] == 2
            for _ in range(10):
                assert call_api(server, bad, "/version").json() == {"version": 2}
            store.verify(store.get(hello_v2.hash))
            assert all(api["status"] == "active" for api in admin.get("/v1/apis").json()["apis"])
    finally:
        server.stop()
    log = server.log_path.read_text()
    assert "cannot run on this host" in log and "python/0/app.py" in log and bad["id"] in log
    assert "does not match its recorded sha256: compiling it again" in log
    assert "Traceback" not in log


def test_a_rollback_to_a_damaged_version_is_refused_before_anything_switches(hello, hello_v2, bundle_store, tmp_path):
    data_dir = tmp_path / "data"
    store = private_store(data_dir / "store", bundle_store, hello, hello_v2)
    settings = Settings(data_dir=data_dir, admin_token=ADMIN_TOKEN, workers=1)
    with TestClient(create_app(settings)) as gateway:
        api = gateway.post("/v1/apis", headers=ADMIN, **deploy_request("hello", SOURCES["hello"])).json()
        swapped = gateway.put(f"/v1/apis/{api['id']}", headers=ADMIN, json={"source": HELLO_V2})
        assert swapped.status_code == 200 and swapped.json()["active_version"] == 2, swapped.text
    (store.bundle_dir(hello.hash) / "python" / "0" / "hello.py").unlink()  # version 1's bundle
    with TestClient(create_app(settings)) as gateway:  # a new process: it has not loaded version 1
        refused = gateway.post(f"/v1/apis/{api['id']}/rollback", headers=ADMIN, json={"version": 1})
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["details"]["reason"] == "bundle-damaged"
        assert "python/0/hello.py is missing" in refused.json()["error"]["details"]["detail"]
        detail = gateway.get(f"/v1/apis/{api['id']}", headers=ADMIN).json()
        assert detail["active_version"] == 2 and detail["status"] == "active"
        key = {"X-API-Key": api["api_key"]}
        assert gateway.get(f"/run/{api['id']}/version", headers=key).json() == {"version": 2}


# -- 3. a full disk -------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 200 MB tmpfs, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=200m", "tmpfs", str(disk)]
    mounted = subprocess.run(mount, check=False, capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield disk
    if subprocess.run(["umount", str(disk)], check=False, capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def fill(disk: Path, leave: int) -> Path:
    """Allocate all of `disk`'s free space but `leave` bytes."""
    filler = disk / "filler"
    filler.unlink(missing_ok=True)
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    fd = os.open(filler, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        os.posix_fallocate(fd, 0, free - leave)
    finally:
        os.close(fd)
    return filler


def store_contents(store: BundleStore) -> list[str]:
    """The store's top level, bundles and precompiled files (not lock files, not the instances'
    scratch directories, which calls change, not a layer's mark of use, which a build that
    reused the layer renews)."""
    names = [p.name for p in store.root.iterdir() if p.name != "instances"]
    for part in ("bundles", "compiled", "layers"):
        names += [p.relative_to(store.root).as_posix() for p in (store.root / part).rglob("*")]
    return sorted(name for name in names if not name.endswith((".lock", ".used")))


def test_a_build_that_runs_out_of_disk_space_fails_cleanly_and_the_gateway_serves_on(
    small_disk, hello, bundle_store, tmp_path
):
    data_dir = small_disk / "data"
    store = private_store(data_dir / "store", bundle_store, hello)
    server = ServerProcess(data_dir, tmp_path / "server.log", ("--workers", "1"))
    server.start()
    try:
        with httpx.Client(base_url=server.url, headers=ADMIN, timeout=120) as admin:
            created = admin.post("/v1/apis", **deploy_request("hello", SOURCES["hello"]))
            assert created.status_code == 201, created.text
            api = created.json()
            kept = store_contents(store)

            # 6 MiB: the sources fit, the app's snapshot (a 24.5 MB component, written from the
            # base the store has) does not. 26 MiB (27.3 MB): that component fits; what is kept
            # of it (~6.5 MB compressed, CPython's libraries being layers stored already) and its
            # ~22 MB precompiled form do not.
            for leave_mb, phase in ((6, "loading your module into the base"), (26, "compiling for this host")):
                fill(small_disk, leave_mb << 20)
                failed = admin.post("/v1/apis", json={"name": f"big-{leave_mb}", "source": unique_source("big")})
                assert failed.status_code == 422, failed.text
                error = failed.json()["error"]
                assert error["code"] == "BUILD_FAILED" and "no space left" in error["message"], error
                assert phase in error["details"]["log"].splitlines()[-1]  # where the space ran out
                for leak in ("Traceback", "os error", str(small_disk), str(tmp_path), "/tmp/", sys.prefix):
                    assert leak not in failed.text
                assert store_contents(store) == kept  # no bundle, part of one, or temporary file
                assert call_api(server, api).json() == HELLO_X
                listed = admin.get("/v1/apis")
                assert listed.status_code == 200 and [a["name"] for a in listed.json()["apis"]] == ["hello"]
                assert admin.get(f"/v1/apis/{api['id']}").json()["status"] == "active"
    finally:
        server.stop()
    assert "Traceback" not in server.log_path.read_text()


def test_a_bundle_loads_when_its_intact_record_cannot_be_written(hello, bundle_store, tmp_path, monkeypatch):
    store = private_store(tmp_path / "store", bundle_store, hello)

    def no_space(target, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bundle_module.durable, "write_atomically", no_space)
    rt = Runtime(store)
    try:
        assert call_bundle(rt, store, hello.hash) == HELLO_X
    finally:
        rt.close()
    assert not list(store.compiled_dir.glob("*.checked"))
