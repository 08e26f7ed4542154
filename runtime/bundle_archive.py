"""Bundles as single archives (tar + zstd), for stores shared between hosts.

A host that has never seen a bundle fetches its archive from the shared store and unpacks it
into its local store; the archive's content is checked against the bundle hash recorded in
its manifest before anything is installed. The archive also carries the component
precompiled for the building host's engine: a host with the same engine fingerprint loads
it in milliseconds instead of compiling for seconds (others compile once, as usual).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import zstandard

from runtime.bundle import COMPILED, COMPONENT, MANIFEST, Bundle, BundleStore


class BadBundleArchive(ValueError):
    pass


def pack(bundle: Bundle, compiled: list[Path] = ()) -> bytes:
    """The bundle directory, plus precompiled artifacts (files from the store's compiled/)."""
    raw = io.BytesIO()
    files = [(p, p.relative_to(bundle.path).as_posix()) for p in sorted(bundle.path.rglob("*")) if "__pycache__" not in p.parts]
    files += [(p, f"{COMPILED}/{p.name}") for p in compiled]
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path, name in files:
            info = archive.gettarinfo(str(path), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            if path.is_file():
                with path.open("rb") as handle:
                    archive.addfile(info, handle)
            else:
                archive.addfile(info)
    return zstandard.ZstdCompressor(level=3).compress(raw.getvalue())


def unpack(data: bytes, store: BundleStore, bundle_hash: str) -> Bundle:
    """Install an archive into `store` under `bundle_hash` (a no-op if it is already there)."""
    if store.has(bundle_hash):
        return store.get(bundle_hash)
    staging = Path(tempfile.mkdtemp(prefix="fetch-", dir=store.root))
    try:
        raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data))
        with tarfile.open(fileobj=raw, mode="r|") as archive:
            archive.extractall(staging, filter="data")
        _verify(staging, bundle_hash)
        _install_compiled(staging / COMPILED, store)
    except (zstandard.ZstdError, tarfile.TarError, OSError, ValueError) as error:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, BadBundleArchive):
            raise
        raise BadBundleArchive(f"bundle {bundle_hash[:12]}: unreadable archive ({error})") from None
    return store.add(staging, bundle_hash)


def _install_compiled(directory: Path, store: BundleStore) -> None:
    if not directory.is_dir():
        return
    for artifact in directory.iterdir():
        target = store.compiled_dir / artifact.name
        if artifact.suffix == ".cwasm" and not target.exists():
            os.replace(artifact, target)
    shutil.rmtree(directory)


def _verify(staging: Path, bundle_hash: str) -> None:
    manifest = json.loads((staging / MANIFEST).read_text())
    if manifest.get("bundle_hash") != bundle_hash:
        raise BadBundleArchive(f"archive holds bundle {manifest.get('bundle_hash')!r}, not {bundle_hash!r}")
    component = hashlib.sha256((staging / COMPONENT).read_bytes()).hexdigest()
    if component != manifest.get("component_sha256"):
        raise BadBundleArchive(f"bundle {bundle_hash[:12]}: component does not match its manifest")
