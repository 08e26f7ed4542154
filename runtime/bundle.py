"""Bundles on disk: the content-addressed store the builder writes and the runtime reads.

Layout under the store root:

    bundles/<bundle-hash>/manifest.json      what the bundle is (see builder.manifest)
    bundles/<bundle-hash>/component.wasm     the componentize-py output
    bundles/<bundle-hash>/python/<n>/        the build's python path entries, preopened
                                             read-only at /<n> so lazy imports work
    compiled/<component-sha256>-<engine>.cwasm   precompiled for one engine configuration
    stdlib-componentize-py-<version>/        the guest stdlib, preopened at /python
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import wasmtime
from wasmtime.component import Component

from runtime import stdlib

MANIFEST = "manifest.json"
COMPONENT = "component.wasm"
PYTHON_PATH = "python"
COMPILED = "compiled"


def _release_freed_memory() -> None:
    """Return freed heap pages to the system (glibc's malloc_trim; elsewhere nothing)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class BundleNotFound(LookupError):
    pass


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: dict

    @property
    def hash(self) -> str:
        return self.manifest["bundle_hash"]

    @property
    def component_path(self) -> Path:
        return self.path / COMPONENT

    @property
    def routes(self) -> list[dict]:
        return self.manifest.get("routes", {}).get("routes", [])

    def preopens(self) -> list[tuple[Path, str]]:
        """(host directory, guest path) pairs the guest saw at build time, in order."""
        root = self.path / PYTHON_PATH
        count = len(list(root.iterdir())) if root.is_dir() else 0
        return [(root / str(i), f"/{i}") for i in range(count)]


class BundleStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.compiled_dir = self.root / COMPILED
        (self.root / "bundles").mkdir(parents=True, exist_ok=True)
        self.compiled_dir.mkdir(parents=True, exist_ok=True)

    def bundle_dir(self, bundle_hash: str) -> Path:
        if not bundle_hash.isalnum():
            raise BundleNotFound(bundle_hash)
        return self.root / "bundles" / bundle_hash

    def has(self, bundle_hash: str) -> bool:
        return (self.bundle_dir(bundle_hash) / MANIFEST).is_file()

    def get(self, bundle_hash: str) -> Bundle:
        path = self.bundle_dir(bundle_hash)
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except FileNotFoundError:
            raise BundleNotFound(bundle_hash) from None
        return Bundle(path, manifest)

    def open(self, path: Path) -> Bundle:
        """A bundle given by its directory (inside this store or anywhere else)."""
        path = Path(path)
        try:
            return Bundle(path, json.loads((path / MANIFEST).read_text()))
        except FileNotFoundError:
            raise BundleNotFound(str(path)) from None

    def add(self, staging: Path, bundle_hash: str) -> Bundle:
        """Move a finished staging directory into place (atomic; first writer wins)."""
        target = self.bundle_dir(bundle_hash)
        try:
            os.rename(staging, target)
        except OSError:
            if not self.has(bundle_hash):
                raise
            shutil.rmtree(staging, ignore_errors=True)
        return self.get(bundle_hash)

    def compiled_artifacts(self, bundle: Bundle) -> list[Path]:
        """The bundle's component precompiled for each engine this store has seen."""
        return sorted(self.compiled_dir.glob(f"{bundle.manifest['component_sha256']}-*.cwasm"))

    def stdlib_dir(self) -> Path:
        return stdlib.ensure_stdlib(self.root)

    def load_component(self, engine: wasmtime.Engine, engine_fingerprint: str, bundle: Bundle) -> Component:
        """Load the bundle's component precompiled for this engine, compiling it once.

        Always loaded from the precompiled file (memory-mapped, shared by every process
        using this store), never kept as compiled in memory: compiling leaves ~300 MB of freed
        heap behind, which `_release_freed_memory` hands back to the system.
        """
        compiled = self.compiled_dir / f"{bundle.manifest['component_sha256']}-{engine_fingerprint}.cwasm"
        if not compiled.is_file():
            fd, tmp = tempfile.mkstemp(dir=compiled.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as out:
                out.write(Component.from_file(engine, str(bundle.component_path)).serialize())
            os.replace(tmp, compiled)
            _release_freed_memory()
        return Component.deserialize_file(engine, str(compiled))
