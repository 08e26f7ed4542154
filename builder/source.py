"""Reads an author's source (a .py file, a directory or a .zip) into a checked file set.

What an uploaded archive may hold is checked before anything is written: no entry outside
the archive (absolute, `..`), no symbolic link, no encrypted or damaged entry, no name that is
both a file and a directory or too long for a file system, no module the sandbox image
provides itself, and at most MAX_FILES files of at most `max_bytes` together, as declared
(a zip entry never yields more than its declared size: a lying one fails its CRC check).
Python files must be text CPython can read (UTF-8 or their declared encoding, no NUL), said
with the file and line rather than as the guest's failure to import them.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import stat
import struct
import tokenize
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from builder.errors import BuildError

MAX_SOURCE_BYTES = 10 << 20
MAX_FILES = 2_000
MAX_NAME_BYTES = 255  # one path component (NAME_MAX)
MAX_PATH_BYTES = 1_024  # a whole relative path
_COMPRESSIONS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
# What reading a damaged archive or entry raises (zipfile, and the decompressors under it).
_ZIP_ERRORS = (
    zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError, ValueError, struct.error, NotImplementedError
)
_SKIPPED_DIRS = {"__pycache__", ".git", ".hg", ".venv", "venv", ".mypy_cache", ".pytest_cache", "node_modules"}
_SKIPPED_SUFFIXES = {".pyc", ".pyo"}
# Module names the sandbox image uses itself.
RESERVED_MODULES = {"wasmgate", "wasmgate_target", "guest_entry", "wit_world", "poll_loop"}


@dataclass(frozen=True)
class SourceTree:
    files: dict[str, bytes]  # posix relative path -> content
    entry_module: str

    def digest(self) -> str:
        h = hashlib.sha256()
        for name in sorted(self.files):
            h.update(name.encode() + b"\0" + hashlib.sha256(self.files[name]).digest())
        return h.hexdigest()

    def write_to(self, root: Path) -> None:
        for name, data in self.files.items():
            target = root / name
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            except OSError as error:  # what the checks did not foresee; never the host's path
                raise BuildError(f"cannot write {name!r} of the source: {error.strerror}") from None


def load_source(path: Path, entry: str | None = None, max_bytes: int = MAX_SOURCE_BYTES) -> SourceTree:
    path = Path(path)
    if path.is_file() and path.suffix == ".py":
        files = {path.name: _read_checked(path, max_bytes)}
        _check_python_text(files)
        return SourceTree(files, _check_entry(entry or path.stem, files))
    if path.is_file() and path.suffix == ".zip":
        files = _read_zip(path, max_bytes)
    elif path.is_dir():
        files = _read_dir(path, max_bytes)
    elif not path.exists():
        raise BuildError(f"source {path} does not exist")
    else:
        raise BuildError(f"source {path.name} must be a .py file, a .zip archive or a directory")
    _check_layout(files)
    _check_python_text(files)
    return SourceTree(files, _check_entry(entry or _guess_entry(files), files))


def _read_checked(path: Path, max_bytes: int) -> bytes:
    size = path.stat().st_size
    if size > max_bytes:
        raise BuildError(f"source is {size} bytes; the limit is {max_bytes}", {"limit_bytes": max_bytes})
    return path.read_bytes()


def _keep(rel: PurePosixPath) -> bool:
    return not (set(rel.parts[:-1]) & _SKIPPED_DIRS or rel.name in _SKIPPED_DIRS or rel.suffix in _SKIPPED_SUFFIXES)


def _read_dir(root: Path, max_bytes: int) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    total = 0
    for file in sorted(root.rglob("*")):
        rel = PurePosixPath(file.relative_to(root).as_posix())
        if file.is_symlink() or not file.is_file() or not _keep(rel):
            continue
        total += file.stat().st_size
        _check_budget(total, len(files) + 1, max_bytes)
        files[str(rel)] = file.read_bytes()
    return files


def _read_zip(path: Path, max_bytes: int) -> dict[str, bytes]:
    try:
        archive = zipfile.ZipFile(path)
    except _ZIP_ERRORS:
        raise BuildError(f"{path.name} is not a valid zip archive") from None
    files: dict[str, bytes] = {}
    total = 0
    with archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            rel = PurePosixPath(info.filename)
            if rel.is_absolute() or ".." in rel.parts:
                raise BuildError(f"zip entry {info.filename!r} points outside the archive")
            if not rel.parts:
                raise BuildError("the archive has an entry without a name")
            if not _keep(rel):
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                raise BuildError(f"zip entry {info.filename!r} is a symbolic link: put the file itself in the archive")
            total += info.file_size
            _check_budget(total, len(files) + 1, max_bytes)
            files[str(rel)] = _read_entry(archive, info)
    return _strip_common_root(files)


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    if info.flag_bits & 0x1:
        raise BuildError(f"zip entry {info.filename!r} is encrypted: the archive must open without a password")
    if info.compress_type not in _COMPRESSIONS:
        raise BuildError(
            f"zip entry {info.filename!r} uses compression method {info.compress_type}, which is not supported "
            "(use deflate, the zip default)"
        )
    try:
        return archive.read(info)
    except _ZIP_ERRORS:
        raise BuildError(
            f"zip entry {info.filename!r} is damaged: it does not match the archive's record of it"
        ) from None


def _check_layout(files: dict[str, bytes]) -> None:
    """Names a file system can hold, each either a file or a directory, none the image's own."""
    for name in files:
        parts = name.split("/")
        if len(name.encode()) > MAX_PATH_BYTES or any(len(part.encode()) > MAX_NAME_BYTES for part in parts):
            raise BuildError(
                f"the source holds a file name too long for a file system: {name[:100]!r}...",
                {"limit_bytes": MAX_NAME_BYTES, "path_limit_bytes": MAX_PATH_BYTES},
            )
        for depth in range(1, len(parts)):
            if "/".join(parts[:depth]) in files:
                raise BuildError(f"{'/'.join(parts[:depth])!r} is both a file and a directory in the source")
        if len(parts) > 1:
            module = parts[0]  # a package (or a directory on the path)
        else:
            module = parts[0][:-3] if parts[0].endswith(".py") else None
        if module in RESERVED_MODULES:
            raise BuildError(
                f"{parts[0]!r}: the module name {module!r} is reserved by wasmgate (the sandbox provides it); rename it"
            )


def _check_python_text(files: dict[str, bytes]) -> None:
    """Each .py file as CPython reads source: its declared encoding (UTF-8 unless said), no NUL."""
    for name, data in files.items():
        if not name.endswith(".py"):
            continue
        if b"\0" in data:
            line = data.count(b"\n", 0, data.index(b"\0")) + 1
            raise BuildError(
                f"syntax error in {name} line {line}: source code cannot contain null bytes (is it a Python file?)",
                {"file": name, "line": line},
            )
        try:
            encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        except SyntaxError as error:
            if "invalid or missing" not in error.msg:  # an unknown or contradictory declaration
                raise BuildError(f"syntax error in {name}: {error.msg}", {"file": name}) from None
            encoding = "utf-8"  # the first lines are not UTF-8 and declare nothing
        try:
            data.decode(encoding)
        except UnicodeDecodeError as error:
            line = data.count(b"\n", 0, error.start) + 1
            raise BuildError(
                f"syntax error in {name} line {line}: byte 0x{data[error.start]:02x} is not valid {encoding} text; "
                "save the file as UTF-8 (or declare its encoding)",
                {"file": name, "line": line, "encoding": encoding},
            ) from None


def _strip_common_root(files: dict[str, bytes]) -> dict[str, bytes]:
    """A zip of a folder holds `folder/...`: treat the folder as the root."""
    tops = {name.split("/", 1)[0] for name in files}
    if len(tops) == 1 and all("/" in name for name in files):
        (top,) = tops
        if not top.endswith(".py") and not (f"{top}/__init__.py" in files):
            return {name.split("/", 1)[1]: data for name, data in files.items()}
    return files


def _check_budget(total: int, count: int, max_bytes: int) -> None:
    if total > max_bytes:
        raise BuildError(f"source is larger than the limit of {max_bytes} bytes", {"limit_bytes": max_bytes})
    if count > MAX_FILES:
        raise BuildError(f"source has more than {MAX_FILES} files")


def _guess_entry(files: dict[str, bytes]) -> str:
    for candidate in ("app", "main"):
        if f"{candidate}.py" in files or f"{candidate}/__init__.py" in files:
            return candidate
    top_modules = sorted(n[:-3] for n in files if "/" not in n and n.endswith(".py"))
    if len(top_modules) == 1:
        return top_modules[0]
    raise BuildError(
        "cannot tell which module defines `app`: name it app.py or main.py, or give the entry module",
        {"modules": top_modules},
    )


def _check_entry(entry: str, files: dict[str, bytes]) -> str:
    if not all(part.isidentifier() for part in entry.split(".")):
        raise BuildError(f"{entry!r} is not a valid Python module name")
    if entry.split(".")[0] in RESERVED_MODULES:
        raise BuildError(f"module name {entry!r} is reserved by wasmgate; rename the file")
    as_path = entry.replace(".", "/")
    if f"{as_path}.py" not in files and f"{as_path}/__init__.py" not in files:
        raise BuildError(f"entry module {entry!r} is not in the source", {"files": sorted(files)[:50]})
    return entry
