"""Bases: one pre-initialized snapshot per set of dependencies, which apps are loaded into.

A base is what componentize-py makes of the sandbox image and a build's dependencies with no
app (`wasmgate_target.MODULE` is None: `sandbox_images/python/guest_entry.py`): CPython, the
stdlib, the SDK, and the dependencies installed on the python path. The store keeps it under
`bases/<key>/`, keyed by everything that goes into it (the lock, the FastAPI layer, the
sandbox image, the toolchain), with its component instrumented to give its state out
(`builder.snapshot_state`) and compiled once. A build then loads its app into an instance of
the base and snapshots that (`builder.resnapshot`): the first build of a set of dependencies
pays for componentize-py, every later one (another app, or a code-only change) does not.

A base appears whole, its directory synced and renamed into place with its files; each file
is checked against the sha256 recorded with it before the base is used (wasmtime trusts a
file it deserializes completely), and a base found damaged is built again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import wasmtime
from wasmtime.component import Component

from builder.componentize import componentize
from builder.snapshot_state import Plan, SnapshotUnsupported, Target, instrument
from runtime import BundleStore, durable
from runtime.bundle import BASES

COMPONENT = "component.wasm"
COMPILED = "instrumented.cwasm"
UNSUPPORTED = "unsupported"  # why the snapshotter refused componentize-py's component for these
DIGESTS = "sha256.json"  # each file's sha256, checked before the base is used
PLAN = "plan.json"


@dataclass
class Base:
    key: str
    component: bytes  # as componentize-py made it (what a build's component is written from)
    plan: Plan
    compiled: Component  # the instrumented component, for the engine of `builder.resnapshot`


def ensure(
    store: BundleStore,
    key: str,
    engine: wasmtime.Engine,
    stage: Callable[[Path], list[Path]],
    log: Callable[[str], None],
) -> Base:
    """The base `key`, built first if the store has none intact: `stage(folder)` lays out its
    python path in `folder` and returns its entries."""
    directory = store.root / BASES / key
    if (directory / UNSUPPORTED).is_file():  # componentize-py's component for these, refused before
        raise SnapshotUnsupported((directory / UNSUPPORTED).read_text())
    if directory.is_dir():
        base = _load(directory, key, engine)
        if base is not None:
            os.utime(directory)  # used: the store's collection keeps what was used lately
            return base
        log("the base for these dependencies is damaged: building it again")
        store.discard_dir(directory)
    started = time.monotonic()
    log("building the base for these dependencies (once for every app that has them: componentize-py)")
    work = store.temporary_dir("build")
    try:
        python_path = stage(work / "python")
        componentize(python_path, work / COMPONENT, log, what="the dependencies")
        component = (work / COMPONENT).read_bytes()
        try:
            instrumented, plan = instrument(component)
        except SnapshotUnsupported as error:  # remembered: the next build goes straight to componentize-py
            _store_as(work, directory, {UNSUPPORTED: str(error)})
            raise
        (work / COMPILED).write_bytes(Component(engine, instrumented).serialize())
        (work / PLAN).write_text(json.dumps([asdict(t) | {"memory": t.memory.hex() if t.memory else None}
                                             for t in plan.targets]))
        (work / DIGESTS).write_text(json.dumps({name: _sha256(work / name) for name in (COMPONENT, COMPILED, PLAN)}))
        shutil.rmtree(work / "python")
        _store_as(work, directory)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"built the base in {time.monotonic() - started:.1f} s")
    base = _load(directory, key, engine)
    if base is None:
        raise RuntimeError(f"the base {key[:12]} just built does not load")
    return base


def _store_as(work: Path, directory: Path, only: dict[str, str] | None = None) -> None:
    """Move the base built in `work` into place (or, with `only`, a directory of just those
    files): synced, then one rename. Another build storing it first wins."""
    if only is not None:
        for child in work.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
        for name, text in only.items():
            (work / name).write_text(text)
    durable.sync_tree(work)
    directory.parent.mkdir(exist_ok=True)
    try:
        os.rename(work, directory)
    except OSError:
        if not directory.is_dir():
            raise


def _load(directory: Path, key: str, engine: wasmtime.Engine) -> Base | None:
    """The base in `directory`, or None when a file is missing or damaged."""
    try:
        digests = json.loads((directory / DIGESTS).read_text())
        if any(_sha256(directory / name) != digests[name] for name in (COMPONENT, COMPILED, PLAN)):
            return None
        targets = [
            Target(t["module"], t["instance"], bytes.fromhex(t["memory"]) if t["memory"] else None,
                   [tuple(g) for g in t["globals"]])
            for t in json.loads((directory / PLAN).read_text())
        ]
        component = (directory / COMPONENT).read_bytes()
        return Base(key, component, Plan(targets), Component.deserialize_file(engine, str(directory / COMPILED)))
    except (OSError, ValueError, KeyError, TypeError, wasmtime.WasmtimeError):
        return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
