"""Source + requirements -> a bundle in the content-addressed store.

The bundle hash is computed from the inputs (source files, the resolved dependency lock,
the sandbox image and the toolchain versions), not from the component bytes, which
componentize-py does not reproduce bit for bit. Equal inputs therefore give equal hashes,
and a bundle already in the store is returned without building again.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from builder import requirements as reqs
from builder.componentize import componentize
from builder.errors import BuildError
from builder.source import MAX_SOURCE_BYTES, SourceTree, load_source
from runtime import Bundle, BundleStore, Limits, Runtime, SandboxError
from runtime.bundle import COMPONENT, MANIFEST, PYTHON_PATH
from sandbox_images.python import ENTRY_FILE, SDK_DIR, TARGET_MODULE, WIT_DIR

FORMAT = 1
GUEST_PYTHON = "3.14"
Log = Callable[[str], None]


@dataclass
class BuildResult:
    bundle: Bundle
    cached: bool
    seconds: float


def build(
    source: Path,
    store: BundleStore,
    *,
    requirements: list[str] | None = None,
    entry: str | None = None,
    wheelhouse: Path | None = None,
    index_url: str | None = None,
    limits: Limits | None = None,
    runtime: Runtime | None = None,
    max_source_bytes: int = MAX_SOURCE_BYTES,
    log: Log = lambda line: None,
) -> BuildResult:
    started = time.monotonic()
    log(f"reading source {Path(source).name}")
    tree = load_source(Path(source), entry, max_source_bytes)
    with tempfile.TemporaryDirectory(prefix="build-", dir=store.root) as tmp:
        work = Path(tmp)
        lock = _resolve(requirements or [], work / "wheels", wheelhouse, index_url, log)
        bundle_hash = _bundle_hash(tree, lock)
        if store.has(bundle_hash):
            log(f"bundle {bundle_hash[:12]} is already built")
            return BuildResult(store.get(bundle_hash), True, time.monotonic() - started)

        staging = work / "bundle"
        python_path = _stage(tree, lock, work / "wheels", staging)
        log("pre-initializing CPython 3.14 with your module (componentize-py)")
        empty_venv = work / "empty-venv"
        (empty_venv / "lib" / f"python{GUEST_PYTHON}" / "site-packages").mkdir(parents=True)
        componentize(python_path, staging / COMPONENT, empty_venv, log)

        manifest = _manifest(tree, lock, bundle_hash, staging / COMPONENT, limits or Limits())
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
        log("compiling for this host and reading the route table")
        runtime = runtime or Runtime(store)
        try:
            manifest["routes"] = runtime.describe(Bundle(staging, manifest))
        except SandboxError as error:
            raise BuildError(f"the app's route table could not be read: {error.message}", {"detail": error.detail})
        manifest["build_seconds"] = round(time.monotonic() - started, 1)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
        bundle = store.add(staging, bundle_hash)
    log(f"built bundle {bundle_hash[:12]} in {time.monotonic() - started:.1f} s")
    return BuildResult(bundle, False, time.monotonic() - started)


def _resolve(
    lines: list[str], wheel_dir: Path, wheelhouse: Path | None, index_url: str | None, log: Log
) -> list[reqs.LockedWheel]:
    if not any(line.strip() and not line.strip().startswith("#") for line in lines):
        return []
    log("resolving requirements for the guest (CPython 3.14, wasm32-wasi)")
    try:
        lock = reqs.resolve_requirements(lines, wheel_dir, wheelhouse=wheelhouse, index_url=index_url, log=log)
    except reqs.RequirementsError as error:
        raise BuildError(str(error), error.details) from None
    for wheel in lock:
        log(f"  {wheel.name}=={wheel.version}")
    return lock


def _stage(tree: SourceTree, lock: list[reqs.LockedWheel], wheel_dir: Path, staging: Path) -> list[Path]:
    """Lay out the guest's python path: 0 = author's code, 1 = dependencies, 2 = sandbox image."""
    app, deps, image = (staging / PYTHON_PATH / str(i) for i in range(3))
    for directory in (app, deps, image):
        directory.mkdir(parents=True)
    tree.write_to(app)
    reqs.install_wheels(lock, wheel_dir, deps)
    shutil.copytree(SDK_DIR, image / "wasmgate", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ENTRY_FILE, image / ENTRY_FILE.name)
    (image / f"{TARGET_MODULE}.py").write_text(
        f'"""Generated: which module holds the app."""\nMODULE = {tree.entry_module!r}\nimport {tree.entry_module}  # noqa: E402,F401\n'
    )
    return [app, deps, image]


def _image_digest() -> str:
    h = hashlib.sha256()
    for root in (SDK_DIR, WIT_DIR):
        for file in sorted(root.rglob("*")):
            if file.is_file() and "__pycache__" not in file.parts:
                h.update(file.relative_to(root.parent).as_posix().encode() + b"\0" + file.read_bytes())
    h.update(ENTRY_FILE.read_bytes())
    return h.hexdigest()


def _toolchain() -> dict[str, str]:
    return {
        "guest_python": GUEST_PYTHON,
        "componentize_py": importlib.metadata.version("componentize-py"),
        "wasmtime": importlib.metadata.version("wasmtime"),
    }


def _bundle_hash(tree: SourceTree, lock: list[reqs.LockedWheel]) -> str:
    inputs = {
        "format": FORMAT,
        "entry": tree.entry_module,
        "source": tree.digest(),
        "lock": [[w.name, w.version, w.sha256] for w in lock],
        "image": _image_digest(),
        "componentize_py": _toolchain()["componentize_py"],
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def _manifest(tree: SourceTree, lock: list[reqs.LockedWheel], bundle_hash: str, component: Path, limits: Limits) -> dict:
    return {
        "format": FORMAT,
        "bundle_hash": bundle_hash,
        "component_sha256": hashlib.sha256(component.read_bytes()).hexdigest(),
        "component_bytes": component.stat().st_size,
        "entry_module": tree.entry_module,
        **_toolchain(),
        "source": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(tree.files.items())},
        "lock": [{"name": w.name, "version": w.version, "filename": w.filename, "sha256": w.sha256} for w in lock],
        "default_limits": limits.as_dict(),
        "routes": {"routes": []},
    }
