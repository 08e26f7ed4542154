"""Files kept as zstd deltas against a reference that many of them share.

Every app built on one base (builder.bases) carries the same CPython heap with a few hundred
KB of its own in it, so its component and its precompiled file differ from another such
app's in a few hundred KB of 18-22 MB (measured: two SDK apps' precompiled files 267 KB apart,
their components a 131 KB delta). The store keeps, per base, the first app's component and
precompiled file as references (`references/<sha256>`, content-addressed; a precompiled one
is a hard link to the file it was), and each later app's as a zstd frame that uses the
reference as its dictionary: ~0.1-0.3 MB where it was ~6.5 MB compressed alone (a component)
or 21.6 MB whole (a precompiled file, which is then only a cache: `BundleStore.trim_compiled`).

Which reference a base's apps use is a pointer file (`references/<base>.<kind>`, the
reference's sha256; kind "component" or an engine fingerprint), made by the first build that
finds none, with a hard link that fails when another build made it first: concurrent builds
agree on one. A reference is read whole and checked against its sha256 before use; whatever
is decoded is checked against the sha256 recorded for it, so a damaged reference or delta
shows as a mismatch and never as a wrong file.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

import zstandard

from runtime import durable

REFERENCES = "references"
COMPONENT = "component"  # the kind of a base's reference component (a precompiled one's: its engine)


def encode(data: bytes, reference: bytes) -> bytes:
    """`data` as a zstd frame with `reference` as its dictionary: a window covering both, and
    match tables large enough to index a 20 MB reference (measured on two SDK apps' 21.6 MB
    precompiled files: 110 KB in 0.32 s; level 10's smaller tables 255 KB in 0.28 s, level 3's
    1.5 MB; optimal parsing 6 KB in 4 s)."""
    params = zstandard.ZstdCompressionParameters(
        window_log=_window_log(reference, len(data)), strategy=zstandard.STRATEGY_GREEDY,
        hash_log=23, chain_log=23, search_log=2, min_match=5, enable_ldm=True,
        write_content_size=True, write_checksum=True,
    )
    return zstandard.ZstdCompressor(dict_data=_dictionary(reference), compression_params=params).compress(data)


def decode(delta: bytes, reference: bytes, size: int) -> bytes:
    """What `encode` was given (zstandard.ZstdError if `delta` is not a frame `encode` made
    against `reference`, or decodes to more than `size` bytes)."""
    decompressor = zstandard.ZstdDecompressor(
        dict_data=_dictionary(reference), max_window_size=1 << _window_log(reference, size)
    )
    return decompressor.decompress(delta, max_output_size=size)


def _dictionary(reference: bytes) -> zstandard.ZstdCompressionDict:
    return zstandard.ZstdCompressionDict(reference, dict_type=zstandard.DICT_TYPE_RAWCONTENT)


def _window_log(reference: bytes, size: int) -> int:
    return min(31, max(20, (len(reference) + size).bit_length()))


class References:
    """The store's `references/` directory."""

    def __init__(self, root: Path) -> None:
        self.dir = Path(root) / REFERENCES
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        if not sha256.isalnum():
            raise ValueError(f"{sha256[:12]!r} is not a sha256")
        return self.dir / sha256

    def read(self, sha256: str) -> bytes | None:
        """The reference's bytes, or None when it is missing or does not match its sha256."""
        try:
            data = self.path(sha256).read_bytes()
        except (FileNotFoundError, ValueError):
            return None
        return data if hashlib.sha256(data).hexdigest() == sha256 else None

    def chosen(self, group: str, kind: str, candidate: Path | bytes) -> str:
        """The sha256 of `group`'s reference of `kind`; when it has none (or its reference is
        gone), `candidate` (bytes, or a file: hard-linked, not copied) becomes it."""
        pointer = self.dir / f"{group}.{kind}"
        try:
            named = pointer.read_text().strip()
            if self.path(named).is_file():
                return named
        except (FileNotFoundError, ValueError):
            pass
        sha256 = self.add(candidate)
        temporary = self._temporary(pointer)
        temporary.write_text(sha256)
        try:
            os.link(temporary, pointer)  # fails if another build named one first: use theirs
        except FileExistsError:
            named = pointer.read_text().strip()
            if named != sha256 and self.path(named).is_file():
                return named
            os.replace(temporary, pointer)  # the pointer named a reference that is gone
        finally:
            temporary.unlink(missing_ok=True)
        return sha256

    def add(self, candidate: Path | bytes) -> str:
        """Keep `candidate` (bytes, or a file: hard-linked where it can be) as a reference;
        its sha256."""
        data = candidate if isinstance(candidate, bytes) else candidate.read_bytes()
        sha256 = hashlib.sha256(data).hexdigest()
        target = self.path(sha256)
        if target.is_file():
            return sha256
        if isinstance(candidate, Path):
            temporary = self._temporary(target)
            try:
                os.link(candidate, temporary)
                os.replace(temporary, target)
                return sha256
            except OSError:  # another file system: written instead
                temporary.unlink(missing_ok=True)
        durable.write_atomically(target, data)
        return sha256

    def _temporary(self, path: Path) -> Path:
        """A name beside `path` for this process (`*.<pid>.<hex>.tmp`, as the store's leftovers)."""
        return path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")

    def pointers(self) -> dict[Path, str]:
        """Each pointer file and the sha256 it names."""
        named = {}
        for pointer in self.dir.glob("*.*"):
            if pointer.name.endswith(".tmp"):
                continue
            try:
                named[pointer] = pointer.read_text().strip()
            except OSError:
                continue
        return named
