"""Bundles on disk: the content-addressed store the builder writes and the runtime reads.

Layout under the store root:

    bundles/<bundle-hash>/manifest.json      what the bundle is (see builder.manifest)
    bundles/<bundle-hash>/component.wasm.zst the componentize-py output, zstd-compressed
                                             (format 4; earlier bundles keep component.wasm)
    bundles/<bundle-hash>/python/<n>/        the build's python path entries, preopened
                                             read-only at /<n> so lazy imports work
    layers/<sha256>.wasm                     a core module bundles share (libpython,
                                             pydantic-core), imported by their components
    layers/fastapi-<digest>/                 the builder's FastAPI layer (python packages)
    bases/<key>/                             a snapshot without an app, per set of dependencies,
                                             that builds load apps into (builder.bases)
    compiled/<component-sha256>-<engine>.cwasm   precompiled for one engine configuration
    compiled/<layer-sha256>-<engine>.cwasm   a layer, precompiled once for all its bundles
    compiled/<...>.cwasm.sha256              the sha256 of that file, written with it
    compiled/<...>.cwasm.checked             the bundle's files as they were when last found intact
    compiled/<...>.cwasm.delta               the file as a delta against its base's reference (the
                                             reference's sha256, then a zstd frame): a file with
                                             one is a cache, removed past `trim_compiled`'s budget
                                             and restored from it when next loaded
    references/<sha256>                      what a base's bundles store their component and
                                             precompiled file against (runtime.references)
    stdlib-componentize-py-<version>/        the guest stdlib, preopened at /python

Nothing here is ever written in place: a bundle directory appears whole (a staging
directory renamed into `bundles/`, manifest included) and a precompiled file replaces its
predecessor by rename, so a process killed at any moment leaves the old state or the new
one, plus leftovers named after its pid (`build-<pid>-*`, `fetch-<pid>-*`,
`discard-<pid>-*`, `compiled/*.<pid>.*.tmp`) that `remove_leftovers` clears.

What is on disk is checked before it is used, once per load (or once until a file changes,
across processes: `found_intact`): every file of a bundle
against the sha256 its manifest records (format 2 bundles record the python tree's; every
bundle its component's; format 3 the layers its component imports, each a file named after
its sha256), and a precompiled file against its recorded sha256 before
wasmtime deserializes it (deserializing trusts the file completely: a damaged one can crash
the process). A damaged precompiled file is compiled again from the (checked) component; a
damaged bundle raises `BundleDamaged` and is never run.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import logging
import os
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import wasmtime
import zstandard
from wasmtime.component import Component

from runtime import durable, references, stdlib
from runtime.errors import SandboxError
from runtime.scratch import gone

log = logging.getLogger("wasmgate.runtime")

MANIFEST = "manifest.json"
COMPONENT = "component.wasm"  # format 3 and before
COMPONENT_ZST = "component.wasm.zst"  # format 4: read only to compile it (see `Bundle.component_wasm`)
PYTHON_PATH = "python"
COMPILED = "compiled"
LAYERS = "layers"
BASES = "bases"
BUNDLES = "bundles"
DIGEST_SUFFIX = ".sha256"  # compiled/<artifact>.cwasm.sha256
LOCK_SUFFIX = ".lock"  # compiled/<artifact>.cwasm.lock, held while it is checked or written
RECORD_SUFFIX = ".checked"  # compiled/<artifact>.cwasm.checked: its bundle's files when last found intact
DELTA_SUFFIX = ".delta"  # compiled/<artifact>.cwasm.delta: the file as a delta against a reference
# Temporary directories in the store root, named <kind>-<pid>-<random>.
BUILD, FETCH, DISCARD = "build", "fetch", "discard"
_TEMPORARY = (BUILD, FETCH, DISCARD)
_SHOWN_PROBLEMS = 3
SHORT_HASH_MIN = 8  # the fewest leading characters of a bundle hash that name it
LAYER_PREFIX = "wasmgate-layer-m"  # + sha256: what a component imports a layer as


def _release_freed_memory() -> None:
    """Return freed heap pages to the system (glibc's malloc_trim; elsewhere nothing)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class BundleNotFound(LookupError):
    pass


class BundleDamaged(SandboxError):
    """A bundle's files are not the ones its manifest records (a file truncated, changed,
    missing or added, the manifest unreadable): it is never run. `detail` says what, in
    paths relative to the bundle."""

    code = "SANDBOX_ERROR"
    message = "the API's bundle is damaged on this host and cannot run; deploy it again"
    reason = "bundle-damaged"


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: dict

    @property
    def hash(self) -> str:
        return self.manifest["bundle_hash"]

    @property
    def component_path(self) -> Path:
        """The component's file: compressed for format 4 bundles (`component_zst_sha256` in the
        manifest), as componentize-py wrote it before."""
        return self.path / (COMPONENT_ZST if self.packed else COMPONENT)

    @property
    def packed(self) -> bool:
        """Whether the component is stored compressed (format 4)."""
        return "component_zst_sha256" in self.manifest

    @property
    def warms_through_handle(self) -> bool:
        """Whether its guest takes the pool's warm-up as a `WARM_METHOD` request through
        `handle` (format 5): an earlier one would hand an ASGI app that request."""
        return self.manifest.get("format", 1) >= 5

    def component_wasm(self, reference: bytes | None = None) -> bytes:
        """The component's bytes, decompressed where stored compressed (not checked: the
        caller compares them with `component_sha256`); one stored as a delta
        (`component_reference` in the manifest) needs that reference's bytes
        (`BundleStore.component_wasm` finds them). A compressed one is only ever read to be
        compiled: what runs is its precompiled file, so keeping it whole on disk would store its
        pre-initialized heap twice."""
        data = self.component_path.read_bytes()
        if not self.packed:
            return data
        size = self.manifest.get("component_bytes", 0)
        try:
            if "component_reference" in self.manifest:
                if reference is None:
                    raise BundleDamaged(
                        f"bundle {self.hash[:12]}: the reference its component is stored against is missing or damaged"
                    )
                return references.decode(data, reference, size)
            return zstandard.ZstdDecompressor().decompress(data, max_output_size=size)
        except zstandard.ZstdError as error:
            raise BundleDamaged(f"bundle {self.hash[:12]}: {COMPONENT_ZST} does not decompress ({error})") from None

    @property
    def routes(self) -> list[dict]:
        return self.manifest.get("routes", {}).get("routes", [])

    @property
    def openapi(self) -> dict | None:
        """The app's own OpenAPI document, when its framework makes one (FastAPI)."""
        document = self.manifest.get("routes", {}).get("openapi")
        return document if isinstance(document, dict) else None

    @functools.cached_property
    def preopens(self) -> list[tuple[Path, str]]:
        """(host directory, guest path) pairs the guest saw at build time, in order (listed
        once: every instance made of the bundle preopens them)."""
        root = self.path / PYTHON_PATH
        count = len(list(root.iterdir())) if root.is_dir() else 0
        return [(root / str(i), f"/{i}") for i in range(count)]

    @classmethod
    def unusable(cls, path: Path, bundle_hash: str, detail: str) -> "Bundle":
        """A stand-in for a bundle that is missing or whose manifest is unreadable: loading it
        raises BundleDamaged with `detail` (so an API on it answers a typed error)."""
        return cls(Path(path), {"bundle_hash": bundle_hash, "routes": {"routes": []}, "unusable": detail})


def layer_name(sha256: str) -> str:
    """The name a component imports the layer with this sha256 under (a valid kebab-case
    component-model name: its last word starts with a letter)."""
    return LAYER_PREFIX + sha256


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def python_tree_digests(bundle_dir: Path) -> dict[str, str]:
    """sha256 of every file of a bundle's python tree, by posix path relative to the bundle
    (what a format 2 manifest records as `files`). A symbolic link counts as a file whose
    content is its target."""
    digests: dict[str, str] = {}
    root = Path(bundle_dir) / PYTHON_PATH
    for directory, dirs, files in os.walk(root):
        base = Path(directory)
        links = [name for name in dirs if (base / name).is_symlink()]
        dirs[:] = sorted(name for name in dirs if name not in links)
        for name in sorted([*files, *links]):
            path = base / name
            relative = path.relative_to(bundle_dir).as_posix()
            if path.is_symlink():
                digests[relative] = hashlib.sha256(b"symlink:" + os.readlink(path).encode()).hexdigest()
            else:
                digests[relative] = file_sha256(path)
    return dict(sorted(digests.items()))


def damage(bundle: Bundle) -> str | None:
    """What is wrong with `bundle` on disk, or None when every file is the one its manifest records."""
    manifest = bundle.manifest
    if "unusable" in manifest:
        return str(manifest["unusable"])
    expected = manifest.get("component_zst_sha256" if bundle.packed else "component_sha256")
    recorded_size = manifest.get("component_zst_bytes" if bundle.packed else "component_bytes")
    name = bundle.component_path.name
    if not isinstance(expected, str):
        return "its manifest records no component digest"
    try:
        size = bundle.component_path.stat().st_size
    except FileNotFoundError:
        return f"{name} is missing"
    if recorded_size is not None and size != recorded_size:
        return f"{name} has {size} bytes, its manifest records {recorded_size}"
    if file_sha256(bundle.component_path) != expected:
        return f"{name} does not match the sha256 its manifest records"
    files = manifest.get("files")
    if files is None:
        return None  # format 1: only the component is recorded
    problems = []
    dirs = manifest.get("python_dirs")
    root = bundle.path / PYTHON_PATH
    if dirs is not None:
        present = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
        if present != sorted(str(i) for i in range(dirs)):
            problems.append(f"{PYTHON_PATH}/ holds {present}, its manifest records {dirs} path entries")
    actual = python_tree_digests(bundle.path) if root.is_dir() else {}
    for name in sorted(files.keys() - actual.keys()):
        problems.append(f"{name} is missing")
    for name in sorted(actual.keys() - files.keys()):
        problems.append(f"{name} is not in its manifest")
    for name in sorted(files.keys() & actual.keys()):
        if files[name] != actual[name]:
            problems.append(f"{name} does not match the sha256 its manifest records")
    if not problems:
        return None
    more = f" (and {len(problems) - _SHOWN_PROBLEMS} more)" if len(problems) > _SHOWN_PROBLEMS else ""
    return "; ".join(problems[:_SHOWN_PROBLEMS]) + more


_SHA256_HEX = 64  # a delta file starts with its reference's sha256, in hex


class BundleStore:
    """`compiled_budget_bytes`: the disk the restorable precompiled files may take
    (`trim_compiled`); 0 keeps every one."""

    def __init__(self, root: Path, compiled_budget_bytes: int = 0) -> None:
        self.root = Path(root).resolve()
        self.compiled_budget_bytes = compiled_budget_bytes
        self.compiled_dir = self.root / COMPILED
        self.layers_dir = self.root / LAYERS
        self.references = references.References(self.root)
        for directory in (self.root / BUNDLES, self.compiled_dir, self.layers_dir):
            directory.mkdir(parents=True, exist_ok=True)
        # layer sha256 -> the file as it was when this process found it intact: every bundle
        # imports the same few, so each is hashed once, not once per bundle checked
        self._intact_layers: dict[str, tuple] = {}

    def bundle_dir(self, bundle_hash: str) -> Path:
        if not bundle_hash.isalnum():
            raise BundleNotFound(bundle_hash)
        return self.root / BUNDLES / bundle_hash

    def has(self, bundle_hash: str) -> bool:
        return (self.bundle_dir(bundle_hash) / MANIFEST).is_file()

    def full_hash(self, prefix: str) -> str:
        """The hash of the one stored bundle whose hash starts with `prefix`, at least
        SHORT_HASH_MIN characters (`wasmgate build` prints 12); BundleNotFound if no bundle or
        several do."""
        if self.has(prefix):
            return prefix
        if len(prefix) < SHORT_HASH_MIN:
            raise BundleNotFound(prefix)
        found = [path.name for path in (self.root / BUNDLES).glob(f"{prefix}*") if (path / MANIFEST).is_file()]
        if len(found) != 1:
            raise BundleNotFound(prefix)
        return found[0]

    def get(self, bundle_hash: str) -> Bundle:
        """The bundle stored under `bundle_hash` (BundleNotFound; BundleDamaged if its manifest
        is unreadable or names another bundle). Its files are checked when it is loaded."""
        path = self.bundle_dir(bundle_hash)
        bundle = self.open(path)
        if bundle.manifest.get("bundle_hash") != bundle_hash:
            raise BundleDamaged(f"bundle {bundle_hash[:12]}: its manifest names another bundle")
        return bundle

    def open(self, path: Path) -> Bundle:
        """A bundle given by its directory (inside this store or anywhere else)."""
        path = Path(path)
        try:
            data = (path / MANIFEST).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise BundleNotFound(str(path)) from None
        try:
            manifest = json.loads(data)
        except ValueError:  # UnicodeDecodeError included
            manifest = None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("bundle_hash"), str):
            raise BundleDamaged(f"bundle {path.name[:12]}: its {MANIFEST} is unreadable")
        return Bundle(path, manifest)

    def verify(self, bundle: Bundle) -> None:
        """Raise BundleDamaged unless every file of `bundle`, and every layer it imports, is the
        one its manifest records."""
        problem = damage(bundle) or self._layer_damage(bundle)
        if problem is not None:
            raise BundleDamaged(f"bundle {bundle.hash[:12]}: {problem}")

    # -- layers: core modules shared by bundles ---------------------------------------------

    def layer_path(self, sha256: str) -> Path:
        if not sha256.isalnum():
            raise BundleDamaged(f"layer {sha256[:12]!r} is not a sha256")
        return self.layers_dir / f"{sha256}.wasm"

    def add_layer(self, data: bytes) -> str:
        """Store a shared core module once (atomic; a damaged copy is replaced), and mark it
        used now: `collect` spares a layer for its grace period after its last use, which
        covers the build that added it until its bundle is stored. The mark is a file of its
        own (`<sha256>.used`): renewing the layer's own mtime would change its identity, and
        every bundle importing it would be hashed again at the next start. Returns its sha256."""
        sha256 = hashlib.sha256(data).hexdigest()
        path = self.layer_path(sha256)
        try:
            intact = path.stat().st_size == len(data) and file_sha256(path) == sha256
        except FileNotFoundError:
            intact = False
        if not intact:
            durable.write_atomically(path, data)
        _used_mark(path).touch()
        return sha256

    def _layer_damage(self, bundle: Bundle) -> str | None:
        for sha256 in bundle.manifest.get("layers", []):
            path = self.layer_path(sha256)
            try:
                identity = _file_identity(path)
                if self._intact_layers.get(sha256) == identity:
                    continue
                actual = file_sha256(path)
            except FileNotFoundError:
                return f"layer {sha256[:12]} is missing from the store"
            if actual != sha256:
                return f"layer {sha256[:12]} in the store does not match its sha256"
            self._intact_layers[sha256] = identity
        return None

    def add(self, staging: Path, bundle_hash: str) -> Bundle:
        """Move a finished staging directory into place (atomic; first writer wins). A directory
        in the way without a manifest (never a bundle: bundles arrive whole) is discarded."""
        target = self.bundle_dir(bundle_hash)
        durable.sync_tree(staging)
        for _attempt in range(3):
            try:
                os.rename(staging, target)
                durable.sync_dir(target.parent)
                break
            except OSError:
                if self.has(bundle_hash):
                    shutil.rmtree(staging, ignore_errors=True)
                    break
                if not target.exists():
                    raise
                log.warning("bundle %s: discarding a directory without a manifest", bundle_hash[:12])
                self.discard_dir(target)
        else:
            raise OSError(f"bundle {bundle_hash[:12]} could not be moved into the store")
        return self.get(bundle_hash)

    def discard(self, bundle_hash: str) -> None:
        """Remove a (damaged) bundle, at once from `bundles/` (renamed away, then deleted)."""
        self.discard_dir(self.bundle_dir(bundle_hash))

    def touch(self, bundle_hash: str) -> None:
        """Mark a bundle as just used (a build that found it already stored): `collect` spares
        it for its grace period, until a version referencing it is recorded. The mark is its
        directory's mtime, not a file's: the bundle's files keep their identity (see
        `found_intact`)."""
        try:
            os.utime(self.bundle_dir(bundle_hash))
        except FileNotFoundError:
            pass

    def collect(self, keep: Callable[[str], bool], grace_s: float, engine_fingerprint: str | None = None) -> list[str]:
        """Remove every bundle that `keep` refuses and that was not built or used (`touch`)
        within `grace_s`, then the precompiled files of components no remaining bundle has,
        and, given the engine this store's processes run (one store serves one host, whose
        processes share one wasmtime), those precompiled for any other engine and older than
        `grace_s`: after a wasmtime upgrade, or fetched with another kind of host's archive, no
        process here can load them.

        `keep` is asked again right before each removal. A bundle leaves `bundles/` in one
        rename, so a crash at any point leaves it whole or gone (plus a `discard-` leftover that
        `remove_leftovers` clears): nothing kept is ever touched. Returns the removed hashes.
        """
        removed = []
        for entry in sorted((self.root / BUNDLES).iterdir()):
            if not entry.is_dir() or keep(entry.name):
                continue
            try:  # built (the manifest is written last), or used since (`touch`)
                age = time.time() - max(entry.stat().st_mtime, (entry / MANIFEST).stat().st_mtime)
            except FileNotFoundError:
                continue  # not a whole bundle: remove_leftovers' business
            if age >= grace_s and not keep(entry.name):
                self.discard_dir(entry)
                removed.append(entry.name)
        self._collect_unreferenced(grace_s, engine_fingerprint)
        return removed

    def _collect_unreferenced(self, grace_s: float, engine_fingerprint: str | None) -> None:
        """Remove the bases and the layers no bundle was built from or imports (once past
        `grace_s`: a build adds them before its bundle), then the precompiled files of what is
        gone, with their digests and deltas (a build's own, written before its bundle is
        stored, may go too: it is compiled again when next loaded), then the references no
        longer used. A process that loaded a removed file keeps it mapped."""
        components, layers, bases, kept_references = set(), set(), set(), set()
        for entry in (self.root / BUNDLES).iterdir():
            try:
                manifest = json.loads((entry / MANIFEST).read_bytes())
                components.add(manifest["component_sha256"])
                layers.update(manifest.get("layers", []))
                bases.add(manifest.get("base"))
                kept_references.add(manifest.get("component_reference"))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        for base in (self.root / BASES).glob("*"):  # built before its first bundle; renewed when used
            if base.name not in bases and _age(base) >= grace_s:
                self.discard_dir(base)
        for layer in self.layers_dir.glob("*.wasm"):
            if layer.stem not in layers and min(_age(layer), _age(_used_mark(layer), missing=float("inf"))) >= grace_s:
                layer.unlink(missing_ok=True)
                _used_mark(layer).unlink(missing_ok=True)
        for mark in self.layers_dir.glob("*.used"):  # left by a collection cut short
            if not mark.with_suffix(".wasm").exists():
                mark.unlink(missing_ok=True)
        wanted = components | {layer.stem for layer in self.layers_dir.glob("*.wasm")}
        artifacts = {path.name for path in self.compiled_dir.glob("*.cwasm")}
        digests = self.compiled_dir.glob(f"*.cwasm{DIGEST_SUFFIX}")  # a trimmed file's digest stays
        artifacts.update(path.name.removesuffix(DIGEST_SUFFIX) for path in digests)
        for artifact in map(self.compiled_dir.joinpath, sorted(artifacts)):
            name, _, engine = artifact.name.removesuffix(".cwasm").partition("-")
            age = _age(artifact if artifact.exists() else _delta_path(artifact))  # a trimmed one: its delta's
            other_engine = engine_fingerprint is not None and engine != engine_fingerprint and age >= grace_s
            if name not in wanted or other_engine:
                with durable.locked(_lock_path(artifact)):
                    for path in (artifact, _digest_path(artifact), _record_path(artifact), _delta_path(artifact)):
                        path.unlink(missing_ok=True)
                _lock_path(artifact).unlink(missing_ok=True)
        self._collect_references(kept_references, grace_s)

    def _collect_references(self, kept: set, grace_s: float) -> None:
        """Remove the pointers of bases that are gone, then the references that no bundle's
        component, precompiled file's delta or pointer is stored against (past `grace_s`: a
        build names one before its bundle is stored)."""
        for pointer, sha256 in self.references.pointers().items():
            if not (self.root / BASES / pointer.name.partition(".")[0]).is_dir():
                pointer.unlink(missing_ok=True)
            else:
                kept.add(sha256)
        for delta in self.compiled_dir.glob(f"*.cwasm{DELTA_SUFFIX}"):
            kept.add(_delta_reference(delta))
        for reference in self.references.dir.iterdir():
            if "." not in reference.name and reference.name not in kept and _age(reference) >= grace_s:
                reference.unlink(missing_ok=True)

    def temporary_dir(self, kind: str) -> Path:
        """A new directory in the store root for `kind` (build, fetch), named after this process."""
        return Path(tempfile.mkdtemp(prefix=f"{kind}-{os.getpid()}-", dir=self.root))

    def remove_leftovers(self) -> list[str]:
        """Remove what processes that died mid-way left behind: their temporary directories,
        their partly written precompiled files, and bundle directories without a manifest.
        Safe while other processes use the store (only dead processes' leftovers are touched).
        Returns the names removed."""
        removed = []
        for entry in self.root.iterdir():
            kind, _, rest = entry.name.partition("-")
            if kind in _TEMPORARY and entry.is_dir() and gone(rest.split("-", 1)[0]):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry.name)
        for entry in (self.root / BUNDLES).iterdir():
            if entry.is_dir() and not (entry / MANIFEST).exists():
                self.discard_dir(entry)
                removed.append(f"{BUNDLES}/{entry.name}")
        for directory in (self.compiled_dir, self.layers_dir, self.references.dir):
            for entry in directory.iterdir():
                parts = entry.name.split(".")
                if entry.name.endswith(".tmp") and len(parts) >= 4 and gone(parts[-3]):
                    entry.unlink(missing_ok=True)
                    removed.append(f"{directory.name}/{entry.name}")
        return removed

    def compiled_artifacts(self, bundle: Bundle) -> list[Path]:
        """The bundle's component, and the layers it imports, precompiled for each engine this
        store has seen (what a bundle archive carries: a host fetching it compiles nothing)."""
        names = [bundle.manifest["component_sha256"], *bundle.manifest.get("layers", [])]
        return sorted(path for name in names for path in self.compiled_dir.glob(f"{name}-*.cwasm"))

    def component_reference(self, bundle: Bundle) -> Path | None:
        """The file of the reference `bundle`'s component is stored against, if any."""
        sha256 = bundle.manifest.get("component_reference")
        return self.references.path(sha256) if isinstance(sha256, str) else None

    def layer_files(self, bundle: Bundle) -> list[Path]:
        """The layers the bundle's component imports, as files of this store."""
        return [self.layer_path(sha256) for sha256 in bundle.manifest.get("layers", [])]

    def install_compiled(self, artifact: Path, digest: Path | None) -> bool:
        """Move a precompiled file (fetched with a bundle) into `compiled/` if it matches its
        digest file and the store has no intact one; whether it was installed."""
        target = self.compiled_dir / artifact.name
        if digest is None or not digest.is_file() or file_sha256(artifact) != digest.read_text().strip():
            return False
        with durable.locked(_lock_path(target)):
            if _intact(target):
                return False
            os.replace(digest, _digest_path(target))
            os.replace(artifact, target)
        return True

    def stdlib_dir(self) -> Path:
        return stdlib.ensure_stdlib(self.root)

    # -- what a restart need not hash again -------------------------------------------------

    def found_intact(self, bundle: Bundle, compiled: Path) -> bool:
        """Whether `bundle` was checked whole (with its precompiled file and layers) and none
        of those files has changed since: the record beside the precompiled file lists each
        file's device, inode, size, mtime and ctime, and ctime moves with any write, even one
        that sets mtime back. A restart loads such a bundle without hashing it (~30 ms an API)."""
        try:
            record = json.loads(_record_path(compiled).read_text())
        except (OSError, ValueError):
            return False
        return record == {"bundle_hash": bundle.hash, "files": self._identities(bundle, compiled)}

    def record_intact(self, bundle: Bundle, compiled: Path) -> None:
        """Record that `bundle` was just checked whole (see `found_intact`). Only saves work:
        when it cannot be written (a full disk), the next process checks the bundle again."""
        record = {"bundle_hash": bundle.hash, "files": self._identities(bundle, compiled)}
        try:
            durable.write_atomically(_record_path(compiled), json.dumps(record).encode())
        except OSError as error:
            log.warning("bundle %s: its intact record could not be written (%s)", bundle.hash[:12], error)

    def _identities(self, bundle: Bundle, compiled: Path) -> dict[str, list]:
        """Each file's identity, named relative to the bundle (or the store, for the shared
        ones): a record written while the bundle was being built still holds once the
        finished directory is renamed into `bundles/`."""
        named = [(MANIFEST, bundle.path / MANIFEST), (bundle.component_path.name, bundle.component_path),
                 (f"{COMPILED}/{compiled.name}", compiled)]
        named += [(f"{LAYERS}/{path.name}", path) for path in self.layer_files(bundle)]
        base = str(bundle.path)
        for directory, _dirs, files in os.walk(os.path.join(base, PYTHON_PATH)):  # strings: ~1 ms a bundle at a start
            relative = os.path.relpath(directory, base).replace(os.sep, "/")
            named += [(f"{relative}/{name}", os.path.join(directory, name)) for name in files]
        identities = {}
        for name, path in named:
            try:
                identities[name] = list(_file_identity(path))
            except FileNotFoundError:
                identities[name] = None
        return identities

    def compiled_path(self, bundle: Bundle, engine_fingerprint: str) -> Path:
        """Where the bundle's component precompiled for an engine is (or will be) kept."""
        return self.compiled_dir / f"{bundle.manifest['component_sha256']}-{engine_fingerprint}.cwasm"

    def load_component(
        self, engine: wasmtime.Engine, engine_fingerprint: str, bundle: Bundle, checked: bool = False
    ) -> Component:
        """Load the bundle's component precompiled for this engine, compiling it once.

        The bundle is checked first (BundleDamaged), and the precompiled file against its
        recorded sha256 before it is deserialized: a missing, partly written or damaged one is
        compiled again from the component. `checked=True` skips both (~50 ms of hashing) for
        files the caller has checked before and knows unchanged since; a precompiled file that
        is gone or not for this engine after all is then loaded the checked way.

        Always loaded from the precompiled file (memory-mapped, shared by every process
        using this store), never kept as compiled in memory: compiling leaves ~300 MB of freed
        heap behind, which `_release_freed_memory` hands back to the system.
        """
        compiled = self.compiled_path(bundle, engine_fingerprint)
        if checked:
            try:
                component = Component.deserialize_file(engine, str(compiled))
                _mark_used(compiled)
                return component
            except (wasmtime.WasmtimeError, OSError):
                pass
        self.verify(bundle)
        name = f"bundle {bundle.hash[:12]}: {bundle.component_path.name}"
        source = _Source(lambda: self.component_wasm(bundle), bundle.manifest["component_sha256"], name)
        restored: list[Path] = []

        def restore(path: Path) -> bool:
            done = self._restore(path)
            if done:
                restored.append(path)
            return done

        component = _load_compiled(engine, compiled, source, Component, restore)
        _mark_used(compiled)
        if restored:
            self.trim_compiled()  # this one, loaded last, is kept
        return component

    def component_wasm(self, bundle: Bundle) -> bytes:
        """The bundle's component (`Bundle.component_wasm`), with the reference it is stored
        against, if any (BundleDamaged when that is missing or damaged)."""
        sha256 = bundle.manifest.get("component_reference")
        return bundle.component_wasm(self.references.read(sha256) if isinstance(sha256, str) else None)

    # -- precompiled files kept as deltas ---------------------------------------------------

    def keep_compiled_as_delta(self, bundle: Bundle, engine_fingerprint: str, group: str) -> int | None:
        """Store `bundle`'s precompiled file for this engine as a delta against `group`'s
        reference (the bundles of one base share one; this file becomes it if there is none),
        so that `trim_compiled` may remove the file and a load restores it in milliseconds
        instead of compiling for seconds. The delta's size, or None when there is no intact
        file to store."""
        compiled = self.compiled_path(bundle, engine_fingerprint)
        with durable.locked(_lock_path(compiled)):
            if not _intact(compiled):
                return None
            sha256 = self.references.chosen(group, engine_fingerprint, compiled)
            reference = self.references.read(sha256)
            if reference is None:
                return None
            delta = sha256.encode("ascii") + references.encode(compiled.read_bytes(), reference)
            durable.write_atomically(_delta_path(compiled), delta)
        return len(delta)

    def restorable(self, bundle: Bundle, engine_fingerprint: str) -> bool:
        """Whether `bundle`'s precompiled file for this engine can be restored (a load restores
        it, not compiles it)."""
        return self._restorable(self.compiled_path(bundle, engine_fingerprint))

    def _restorable(self, compiled: Path) -> bool:
        """Whether `compiled` has its digest and a delta whose reference is here."""
        reference = _delta_reference(_delta_path(compiled))
        if reference is None or not _digest_path(compiled).is_file():
            return False
        try:
            return self.references.path(reference).is_file()
        except ValueError:  # not a sha256
            return False

    def intact(self, bundle: Bundle) -> bool:
        """Whether every file of `bundle` is the one its manifest records (`verify`, answered)."""
        try:
            self.verify(bundle)
        except BundleDamaged:
            return False
        return True

    def _restore(self, compiled: Path) -> bool:
        """Write `compiled` again from its delta, when it has one, its reference is here, and
        what the delta decodes to is the file its recorded sha256 names."""
        try:
            delta = _delta_path(compiled).read_bytes()
            expected = _digest_path(compiled).read_text().strip()
        except FileNotFoundError:
            return False
        try:  # not hashed: a damaged reference decodes to a file that does not match (~15 ms saved)
            reference = self.references.path(delta[:_SHA256_HEX].decode("ascii", "replace")).read_bytes()
            data = references.decode(delta[_SHA256_HEX:], reference, 4 * len(reference))
        except (FileNotFoundError, ValueError, zstandard.ZstdError):
            return False
        if hashlib.sha256(data).hexdigest() != expected:
            return False
        durable.write_atomically(compiled, data)
        return True

    def trim_compiled(self) -> list[str]:
        """Remove the least recently loaded precompiled files that can be restored (each has a
        delta whose reference is here) until those take at most `compiled_budget_bytes` (none
        when it is 0); layers' files and files without a delta are neither counted nor
        removed. A process that has a removed file mapped keeps it; the next load restores it
        from its delta. Returns the names removed."""
        if not self.compiled_budget_bytes:
            return []
        restorable = []
        for delta in self.compiled_dir.glob(f"*.cwasm{DELTA_SUFFIX}"):
            artifact = delta.with_name(delta.name.removesuffix(DELTA_SUFFIX))
            if not self._restorable(artifact):
                continue
            try:
                restorable.append((_digest_path(artifact).stat().st_mtime, artifact.stat().st_size, artifact))
            except FileNotFoundError:  # trimmed already
                continue
        total = sum(size for _used, size, _artifact in restorable)
        removed = []
        for _used, size, artifact in sorted(restorable):
            if total <= self.compiled_budget_bytes:
                break
            with durable.locked(_lock_path(artifact)):
                artifact.unlink(missing_ok=True)
                _record_path(artifact).unlink(missing_ok=True)
            total -= size
            removed.append(artifact.name)
        return removed

    def load_layer(self, engine: wasmtime.Engine, engine_fingerprint: str, sha256: str) -> wasmtime.Module:
        """Load a layer precompiled for this engine, compiling it once (as `load_component`
        does: checked against its sha256 first, BundleDamaged if it is missing or is not)."""
        path = self.layer_path(sha256)
        if not path.is_file():
            raise BundleDamaged(f"layer {sha256[:12]} is missing from the store")
        compiled = self.compiled_dir / f"{sha256}-{engine_fingerprint}.cwasm"
        return _load_compiled(engine, compiled, _Source(path.read_bytes, sha256, f"layer {sha256[:12]}"), wasmtime.Module)

    def discard_dir(self, path: Path) -> None:
        """Remove a directory of the store in one rename first (a crash leaves it whole or a
        `discard-` leftover)."""
        trash = self.root / f"{DISCARD}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)


@dataclass(frozen=True)
class _Source:
    """What a precompiled file is compiled from: what reads its bytes, their recorded sha256,
    its name in errors."""

    read: Callable[[], bytes]
    sha256: str
    name: str


def _load_compiled(
    engine: wasmtime.Engine, compiled: Path, source: _Source, kind: type, restore: Callable[[Path], bool] | None = None
) -> Any:
    """`kind` (Component or Module) deserialized from `compiled`, which is checked against its
    recorded sha256 first; when missing, partly written or damaged it is restored (`restore`,
    from its delta) or else compiled again from `source`, as it is when not for this engine
    after all."""
    with durable.locked(_lock_path(compiled)):
        if not _intact(compiled) and (restore is None or not restore(compiled)):
            if compiled.exists():
                log.warning("%s does not match its recorded sha256: compiling it again", compiled.name)
            _compile(engine, source, compiled, kind)
        try:
            return kind.deserialize_file(engine, str(compiled))
        except wasmtime.WasmtimeError as error:  # intact but not for this engine after all
            log.warning("%s could not be deserialized (%s): compiling it again", compiled.name, error)
            _compile(engine, source, compiled, kind)
            return kind.deserialize_file(engine, str(compiled))


def _compile(engine: wasmtime.Engine, source: _Source, target: Path, kind: type) -> None:
    wasm = source.read()
    if hashlib.sha256(wasm).hexdigest() != source.sha256:
        raise BundleDamaged(f"{source.name} does not match the sha256 its manifest records")
    compiled = kind(engine, wasm).serialize()
    del wasm
    # The file, then its digest: cut short between the two (or by a full disk), what is left
    # does not match and is compiled again.
    durable.write_atomically(target, compiled)
    durable.write_atomically(_digest_path(target), hashlib.sha256(compiled).hexdigest().encode())
    del compiled
    _release_freed_memory()


def _file_identity(path: Path | str) -> tuple:
    """What changes when a file is replaced or written to (ctime: whatever sets mtime back)."""
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


def _age(path: Path, missing: float = 0.0) -> float:
    """Seconds since `path` was last written (`missing` for one that is gone; by default 0:
    never old enough)."""
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return missing


def _used_mark(layer: Path) -> Path:
    return layer.with_suffix(".used")


def _mark_used(artifact: Path) -> None:
    """Note that `artifact` was just loaded (its digest file's mtime: `trim_compiled` removes
    the least recently loaded first; the file itself keeps its identity)."""
    try:
        os.utime(_digest_path(artifact))
    except FileNotFoundError:
        pass


def _delta_path(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + DELTA_SUFFIX)


def _delta_reference(delta: Path) -> str | None:
    """The sha256 of the reference a delta file is against (its first 64 bytes), or None
    when it cannot be read."""
    try:
        with delta.open("rb") as handle:
            return handle.read(_SHA256_HEX).decode("ascii", "replace")
    except OSError:
        return None


def _digest_path(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + DIGEST_SUFFIX)


def _record_path(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + RECORD_SUFFIX)


def _lock_path(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + LOCK_SUFFIX)


def _intact(artifact: Path) -> bool:
    """Whether `artifact` exists and matches the sha256 recorded next to it."""
    try:
        expected = _digest_path(artifact).read_text().strip()
        return file_sha256(artifact) == expected
    except FileNotFoundError:
        return False
