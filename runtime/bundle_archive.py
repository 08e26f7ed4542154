"""Bundles as single archives (tar + zstd), for stores shared between hosts.

A host that has never seen a bundle fetches its archive from the shared store and unpacks it
into its local store; the archive's content is checked against the bundle hash recorded in
its manifest before anything is installed. The archive also carries the component
precompiled for the building host's engine: a host with the same engine fingerprint loads
it in milliseconds instead of compiling for seconds (others compile once, as usual), once
it has checked it against the sha256 recorded with it (`<artifact>.sha256`, also carried).
The layers the bundle's component imports travel with it (`layers/<sha256>.wasm`), each
checked against its name before the store takes it; a host compiles a layer once for all
the bundles that import it. So does the reference its component is stored against
(`references/<sha256>`, runtime.references), checked the same way.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import zstandard

from runtime.bundle import (
    COMPILED, DIGEST_SUFFIX, FETCH, LAYERS, MANIFEST, Bundle, BundleDamaged, BundleStore, damage, file_sha256,
)
from runtime.references import REFERENCES


class BadBundleArchive(ValueError):
    pass


def pack(
    bundle: Bundle, compiled: list[Path] = (), layers: list[Path] = (), reference: Path | None = None
) -> bytes:
    """The bundle directory, plus precompiled artifacts (files from the store's compiled/) with
    their recorded digests, the layers its component imports (files from layers/) and the
    reference its component is stored against (`BundleStore.component_reference`)."""
    raw = io.BytesIO()
    files = [(p, p.relative_to(bundle.path).as_posix()) for p in sorted(bundle.path.rglob("*")) if "__pycache__" not in p.parts]
    files += [(layer, f"{LAYERS}/{layer.name}") for layer in layers]
    if reference is not None:
        files.append((reference, f"{REFERENCES}/{reference.name}"))
    for artifact in compiled:
        digest = artifact.with_name(artifact.name + DIGEST_SUFFIX)
        files += [(p, f"{COMPILED}/{p.name}") for p in (artifact, digest) if p.is_file()]
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
    """Install an archive into `store` under `bundle_hash` (a no-op if it is already there,
    intact; a damaged copy there is replaced)."""
    if store.has(bundle_hash):
        try:
            bundle = store.get(bundle_hash)
            store.verify(bundle)
            return bundle
        except BundleDamaged:
            store.discard(bundle_hash)
    staging = store.temporary_dir(FETCH)
    try:
        raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data))
        with tarfile.open(fileobj=raw, mode="r|") as archive:
            archive.extractall(staging, filter="data")
        _verify(staging, bundle_hash)
        _install_layers(staging, store)
        _install_reference(staging, store)
        _install_compiled(staging / COMPILED, store)
    except (zstandard.ZstdError, tarfile.TarError, OSError, ValueError) as error:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, BadBundleArchive):
            raise
        raise BadBundleArchive(f"bundle {bundle_hash[:12]}: unreadable archive ({error})") from None
    return store.add(staging, bundle_hash)


def _install_layers(staging: Path, store: BundleStore) -> None:
    """Put the layers the bundle imports into the store (each checked against its name); one
    neither carried nor in the store already makes the archive bad."""
    carried = staging / LAYERS
    for sha256 in json.loads((staging / MANIFEST).read_text()).get("layers", []):
        layer = carried / f"{sha256}.wasm"
        if layer.is_file():
            if file_sha256(layer) != sha256:
                raise BadBundleArchive(f"layer {sha256[:12]} in the archive does not match its sha256")
            store.add_layer(layer.read_bytes())
        elif not store.layer_path(sha256).is_file():
            raise BadBundleArchive(f"the archive lacks layer {sha256[:12]}, which its bundle imports")
    shutil.rmtree(carried, ignore_errors=True)


def _install_reference(staging: Path, store: BundleStore) -> None:
    """Put the reference the bundle's component is stored against into the store (checked
    against its name); one neither carried nor in the store already makes the archive bad."""
    sha256 = json.loads((staging / MANIFEST).read_text()).get("component_reference")
    carried = staging / REFERENCES
    if isinstance(sha256, str):
        reference = carried / sha256
        if reference.is_file():
            if file_sha256(reference) != sha256:
                raise BadBundleArchive(f"reference {sha256[:12]} in the archive does not match its sha256")
            store.references.add(reference)
        elif store.references.read(sha256) is None:
            raise BadBundleArchive(f"the archive lacks reference {sha256[:12]}, which its component is stored against")
    shutil.rmtree(carried, ignore_errors=True)


def _install_compiled(directory: Path, store: BundleStore) -> None:
    if not directory.is_dir():
        return
    for artifact in directory.glob("*.cwasm"):
        store.install_compiled(artifact, artifact.with_name(artifact.name + DIGEST_SUFFIX))
    shutil.rmtree(directory)


def _verify(staging: Path, bundle_hash: str) -> None:
    manifest = json.loads((staging / MANIFEST).read_text())
    if not isinstance(manifest, dict):
        raise BadBundleArchive(f"bundle {bundle_hash[:12]}: the archive's manifest is not an object")
    if manifest.get("bundle_hash") != bundle_hash:
        raise BadBundleArchive(f"archive holds bundle {manifest.get('bundle_hash')!r}, not {bundle_hash!r}")
    problem = damage(Bundle(staging, manifest))  # compiled/, beside python/, is not looked at
    if problem is not None:
        raise BadBundleArchive(f"bundle {bundle_hash[:12]}: {problem}")
