"""Source + requirements -> a bundle in the content-addressed store.

The bundle hash is computed from the inputs (source files, the resolved dependency lock,
the sandbox image and the toolchain versions), not from the component bytes, which
componentize-py does not reproduce bit for bit. Equal inputs therefore give equal hashes,
and a bundle already in the store is returned without building again (once checked: a
damaged one is built again).

A build works in a temporary directory of the store named after its process and moves the
finished bundle into place in one rename, so a build that fails or is killed leaves no bundle
behind (a killed one's directory is removed by the next gateway start). Running out of disk
space is a BuildError saying so.
"""

from __future__ import annotations

import errno
import hashlib
import importlib.metadata
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import zstandard

from builder import bases, component_layers, framework_layer, immortal_refcounts, requirements as reqs, resnapshot
from builder.componentize import GUEST_PYTHON, NO_SPACE, componentize
from builder.errors import BuildError
from builder.snapshot_state import SnapshotUnsupported
from builder.source import MAX_SOURCE_BYTES, SourceTree, load_source
from builder.wheels import OPTIONAL_NATIVE, parse_wheel_name
from runtime import Bundle, BundleStore, Limits, Runtime, SandboxError, references
from runtime.bundle import BUILD, COMPONENT, COMPONENT_ZST, MANIFEST, PYTHON_PATH, BundleDamaged, python_tree_digests
from sandbox_images.python import ENTRY_FILE, SDK_DIR, SNAPSHOT_LISTING, TARGET_MODULE, WIT_DIR

FORMAT = 6  # 2: the manifest records the python tree's sha256s; no __pycache__ in bundles;
# 3: CPython's libraries are layers the component imports; 4: the component is stored compressed;
# 5: the guest's `handle` takes the pool's warm-up request (runtime.instance.WARM_REQUEST);
# 6: the component may be stored as a delta against its base's reference (runtime.references)
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
    try:
        tree = load_source(Path(source), entry, max_source_bytes)
        work = store.temporary_dir(BUILD)
        try:
            return _build(tree, store, work, requirements, wheelhouse, index_url, limits, runtime, log, started)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise BuildError(NO_SPACE, {"reason": "no-space"}) from None
        raise


def _build(
    tree: SourceTree,
    store: BundleStore,
    work: Path,
    requirements: list[str] | None,
    wheelhouse: Path | None,
    index_url: str | None,
    limits: Limits | None,
    runtime: Runtime | None,
    log: Log,
    started: float,
) -> BuildResult:
    lines, names_provided = framework_layer.split_requirements(requirements or [], log)
    uses_layer = names_provided or framework_layer.wanted(tree.files)
    extras_of = framework_layer.extras_of(store.root, log)
    provided = reqs.Provided(framework_layer.provided(uses_layer), extras_of)
    lock = _resolve(lines, work / "wheels", wheelhouse, index_url, provided, log)
    if provided.used and not uses_layer:  # pydantic through another package: the layer after all
        log(f"resolving again against the sandbox's FastAPI layer ({', '.join(provided.used)} required)")
        uses_layer, provided = True, reqs.Provided(framework_layer.provided(True), extras_of)
        lock = _resolve(lines, work / "wheels", wheelhouse, index_url, provided, log)
    layer = None
    if uses_layer:
        layer = framework_layer.ensure(store.root, log)
        log("using the sandbox's FastAPI layer (" + ", ".join(
            f"{name} {framework_layer.PACKAGES[name][0]}" for name in ("fastapi", "starlette", "pydantic")) + ")")
    bundle_hash = _bundle_hash(tree, lock, layer is not None)
    cached = _cached(store, bundle_hash, log)
    if cached is not None:
        log(f"bundle {bundle_hash[:12]} is already built")
        return BuildResult(cached, True, time.monotonic() - started)

    staging = work / "bundle"
    python_path = _stage(tree, lock, work / "wheels", staging, layer)
    base_key = _pre_initialize(store, lock, layer, work, python_path, staging / COMPONENT, log)
    _immortalize(staging / COMPONENT, python_path[-1] / SNAPSHOT_LISTING)
    for bytecode in sorted((staging / PYTHON_PATH).rglob("__pycache__")):
        shutil.rmtree(bytecode)  # written by the build for modules now in the snapshot; never archived
    component, layers = _share_layers(staging / COMPONENT, store, log)
    reference = store.references.chosen(base_key, references.COMPONENT, component) if base_key else None
    packed = _pack_component(component, staging, reference and store.references.read(reference))

    manifest = _manifest(tree, lock, bundle_hash, staging, limits or Limits(), layer is not None, layers,
                         _component_fields(component, packed, reference), base_key)
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
    log("compiling for this host and reading the route table")
    runtime = runtime or Runtime(store)
    try:
        manifest["routes"] = runtime.describe(Bundle(staging, manifest))
    except SandboxError as error:
        raise BuildError(f"the app's route table could not be read: {error.message}", {"detail": error.detail})
    if base_key:
        delta = store.keep_compiled_as_delta(Bundle(staging, manifest), runtime.engine.fingerprint, base_key)
        if delta is not None:
            log(f"  its precompiled file kept as a delta of {delta / 1e6:.2f} MB against its base's reference")
    manifest["build_seconds"] = round(time.monotonic() - started, 1)
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
    bundle = store.add(staging, bundle_hash)
    log(f"built bundle {bundle_hash[:12]} in {time.monotonic() - started:.1f} s")
    return BuildResult(bundle, False, time.monotonic() - started)


def _pre_initialize(
    store: BundleStore, lock: list[reqs.LockedWheel], layer: Path | None, work: Path, python_path: list[Path],
    output: Path, log: Log,
) -> str | None:
    """Write the app's pre-initialized component to `output`: the app loaded into the base for
    its dependencies (built first if the store has none), or, for a component this builder
    cannot snapshot again, componentize-py run on the app itself. The base's key, or None."""
    key = _base_key(lock, layer is not None)
    engine = resnapshot.engine()
    try:
        base = bases.ensure(store, key, engine, lambda folder: _stage(None, lock, work / "wheels", folder, layer), log)
    except SnapshotUnsupported as error:
        log(f"componentize-py's component cannot be snapshotted again here ({error}): pre-initializing your module with it")
        componentize(python_path, output, log)
        return None
    started = time.monotonic()
    log(f"loading your module into the base {key[:12]} and taking its snapshot")
    output.write_bytes(resnapshot.load_app(engine, base, python_path, store.stdlib_dir(), work / "printed.txt"))
    log(f"  done in {time.monotonic() - started:.1f} s")
    return key


def _base_key(lock: list[reqs.LockedWheel], layer: bool) -> str:
    """What a base is made of: the build's inputs less the app's own, and the wasmtime that
    compiled it."""
    return _digest({**_dependency_inputs(lock, layer), **_toolchain()})


def _immortalize(component: Path, listing: Path) -> None:
    """Make the snapshot's objects immortal in the component's memory image (the listing the
    guest wrote at the end of its pre-initialization; removed, never part of the bundle)."""
    data, _count = immortal_refcounts.immortalize(component.read_bytes(), listing.read_bytes())
    component.write_bytes(data)
    listing.unlink()


def _share_layers(component: Path, store: BundleStore, log: Log) -> tuple[bytes, list[str]]:
    """Move the component's code-only core modules (CPython's libraries) into the store's
    layers, stored once for every bundle: what is left of the component, and the sha256 of
    each layer, in import order. The file componentize-py wrote is removed."""
    split, layers = component_layers.split(component.read_bytes())
    for data in layers.values():
        store.add_layer(data)
    component.unlink()
    log(f"sharing {len(layers)} of CPython's compiled libraries with the other bundles "
        f"({sum(map(len, layers.values())) / 1e6:.1f} MB stored once; {len(split) / 1e6:.1f} MB this bundle's own)")
    return split, list(layers)


def _pack_component(component: bytes, staging: Path, reference: bytes | None) -> bytes:
    """Store the component compressed: what runs is its precompiled file, which holds the same
    pre-initialized heap, so the component is read only to compile it again (a new engine, a
    damaged precompiled file). Against its base's reference (the first app built on the base,
    `runtime.references`) when there is one: ~0.1-0.2 MB for an SDK app; alone (zstd level 3)
    otherwise: 15.3 MB -> 5.8 MB in ~60 ms."""
    if reference is not None:
        packed = references.encode(component, reference)
    else:
        packed = zstandard.ZstdCompressor(level=3, write_content_size=True).compress(component)
    (staging / COMPONENT_ZST).write_bytes(packed)
    return packed


def _component_fields(component: bytes, packed: bytes, reference: str | None) -> dict:
    """What a manifest records of its component: the component's identity (its precompiled
    files are named after it), the stored file's, which the runtime checks, and the reference
    it is stored against."""
    fields = {
        "component_sha256": hashlib.sha256(component).hexdigest(),
        "component_bytes": len(component),
        "component_zst_sha256": hashlib.sha256(packed).hexdigest(),
        "component_zst_bytes": len(packed),
    }
    if reference is not None:
        fields["component_reference"] = reference
    return fields


def _cached(store: BundleStore, bundle_hash: str, log: Log) -> Bundle | None:
    """The bundle already in the store under `bundle_hash`, if it is there intact; a damaged
    one is removed (and so built again)."""
    if not store.has(bundle_hash):
        return None
    try:
        bundle = store.get(bundle_hash)
        store.verify(bundle)
    except BundleDamaged as error:
        log(f"bundle {bundle_hash[:12]} in the store is damaged ({error.detail.split(': ', 1)[-1]}): building it again")
        store.discard(bundle_hash)
        return None
    return bundle


def _resolve(
    lines: list[str], wheel_dir: Path, wheelhouse: Path | None, index_url: str | None, provided: reqs.Provided, log: Log
) -> list[reqs.LockedWheel]:
    if not any(line.strip() and not line.strip().startswith("#") for line in lines):
        return []
    log("resolving requirements for the guest (CPython 3.14, wasm32-wasi)")
    try:
        lock = reqs.resolve_requirements(
            lines, wheel_dir, wheelhouse=wheelhouse, index_url=index_url, provided=provided, log=log
        )
    except reqs.RequirementsError as error:
        raise BuildError(str(error), error.details) from None
    for wheel in lock:
        parsed = parse_wheel_name(wheel.filename)
        optional = "" if parsed is None or parsed.is_pure_for_guest else (
            f" (its optional native code is left out: {OPTIONAL_NATIVE[wheel.name]})")
        log(f"  {wheel.name}=={wheel.version}{optional}")
    return lock


def _stage(
    tree: SourceTree | None, lock: list[reqs.LockedWheel], wheel_dir: Path, staging: Path, layer: Path | None
) -> list[Path]:
    """Lay out the guest's python path: the author's code, the FastAPI layer if the app uses
    it (ahead of the dependencies: the sandbox's releases win), dependencies, sandbox image.
    Without `tree`, a base's: the app's folder empty, and no module named to import."""
    count = 4 if layer is not None else 3
    directories = [staging / PYTHON_PATH / str(i) for i in range(count)]
    for directory in directories:
        directory.mkdir(parents=True)
    app, deps, image = directories[0], directories[-2], directories[-1]
    if tree is not None:
        tree.write_to(app)
    if layer is not None:  # hard links into the store's one copy, where the filesystem allows
        shutil.copytree(layer, directories[1], dirs_exist_ok=True, copy_function=_link_or_copy,
                        ignore=shutil.ignore_patterns(".complete", "__pycache__"))
    reqs.install_wheels(lock, wheel_dir, deps)
    shutil.copytree(SDK_DIR, image / "wasmgate", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ENTRY_FILE, image / ENTRY_FILE.name)
    target = f"MODULE = {tree.entry_module!r}\nimport {tree.entry_module}  # noqa: E402,F401\n" if tree else "MODULE = None\n"
    (image / f"{TARGET_MODULE}.py").write_text(f'"""Generated: which module holds the app."""\n{target}')
    return directories


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


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


def _bundle_hash(tree: SourceTree, lock: list[reqs.LockedWheel], layer: bool) -> str:
    return _digest({**_dependency_inputs(lock, layer), "entry": tree.entry_module, "source": tree.digest()})


def _dependency_inputs(lock: list[reqs.LockedWheel], layer: bool) -> dict:
    """What a build's inputs are besides the app's own code."""
    inputs: dict = {
        "format": FORMAT,
        "lock": [[w.name, w.version, w.sha256] for w in lock],
        "image": _image_digest(),
        "componentize_py": _toolchain()["componentize_py"],
    }
    if layer:
        inputs["fastapi_layer"] = framework_layer.digest()
    return inputs


def _digest(inputs: dict) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def _manifest(
    tree: SourceTree,
    lock: list[reqs.LockedWheel],
    bundle_hash: str,
    staging: Path,
    limits: Limits,
    layer: bool,
    layers: list[str],
    component: dict,
    base: str | None,
) -> dict:
    provided = {name: version for name, (version, _f, _s) in framework_layer.PACKAGES.items()} if layer else {}
    return {
        "format": FORMAT,
        "bundle_hash": bundle_hash,
        **component,
        "entry_module": tree.entry_module,
        **_toolchain(),
        "source": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(tree.files.items())},
        "lock": [{"name": w.name, "version": w.version, "filename": w.filename, "sha256": w.sha256} for w in lock],
        "provided": provided,  # the sandbox's FastAPI layer, when the app uses it
        "layers": layers,  # the store's shared core modules the component imports (sha256s)
        "base": base,  # the store's base the app was loaded into (builder.bases), if any
        # What the runtime checks before it loads the bundle (runtime.bundle.damage).
        "python_dirs": len(list((staging / PYTHON_PATH).iterdir())),
        "files": python_tree_digests(staging),
        "default_limits": limits.as_dict(),
        "routes": {"routes": []},
    }
