"""The guest's standard library as a host directory, for imports that happen at run time.

componentize-py snapshots only the modules imported at build time. A handler that imports a
stdlib module lazily needs the module's source at run time, so the runtime preopens this
directory read-only at the guest path the build used (`/python`). The files come from the
zstd-compressed tar that componentize-py embeds in its extension module; they are extracted
once per componentize-py version.
"""

from __future__ import annotations

import importlib.metadata
import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import zstandard

GUEST_PATH = "/python"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# A file only the stdlib archive holds (componentize-py embeds other archives too).
_MARKER = "_sysconfigdata__wasi_wasm32-wasi.py"


class StdlibNotFound(RuntimeError):
    """componentize-py's embedded stdlib could not be located."""


def componentize_py_version() -> str:
    return importlib.metadata.version("componentize-py")


def ensure_stdlib(cache_root: Path) -> Path:
    """Return the extracted guest stdlib directory under `cache_root`, extracting it once."""
    target = cache_root / f"stdlib-componentize-py-{componentize_py_version()}"
    if (target / _MARKER).is_file():
        return target
    cache_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".stdlib-", dir=cache_root))
    try:
        _extract(_extension_path(), staging)
        try:
            os.rename(staging, target)
        except OSError:  # another process finished first
            if not (target / _MARKER).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _extension_path() -> Path:
    dist = importlib.metadata.distribution("componentize-py")
    for file in dist.files or ():
        if file.name.startswith("componentize_py") and file.suffix == ".so":
            return Path(dist.locate_file(file))
    raise StdlibNotFound("componentize-py's extension module is not installed")


def _extract(extension: Path, into: Path) -> None:
    data = extension.read_bytes()
    start = data.find(_ZSTD_MAGIC)
    while start >= 0:
        if _is_stdlib_archive(data, start):
            reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(memoryview(data)[start:]))
            with tarfile.open(fileobj=reader, mode="r|") as archive:
                archive.extractall(into, filter="data")
            return
        start = data.find(_ZSTD_MAGIC, start + 1)
    raise StdlibNotFound(f"no stdlib archive found in {extension}")


def _is_stdlib_archive(data: bytes, start: int) -> bool:
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(memoryview(data)[start:]))
        with tarfile.open(fileobj=reader, mode="r|") as archive:
            return any(member.name == _MARKER for member in archive)
    except (zstandard.ZstdError, tarfile.TarError, EOFError):
        return False
