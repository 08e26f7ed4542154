"""Reads an author's source (a .py file, a directory or a .zip) into a checked file set."""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from builder.errors import BuildError

MAX_SOURCE_BYTES = 10 << 20
MAX_FILES = 2_000
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
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)


def load_source(path: Path, entry: str | None = None, max_bytes: int = MAX_SOURCE_BYTES) -> SourceTree:
    path = Path(path)
    if path.is_file() and path.suffix == ".py":
        files = {path.name: _read_checked(path, max_bytes)}
        return SourceTree(files, _check_entry(entry or path.stem, files))
    if path.is_file() and path.suffix == ".zip":
        files = _read_zip(path, max_bytes)
    elif path.is_dir():
        files = _read_dir(path, max_bytes)
    elif not path.exists():
        raise BuildError(f"source {path} does not exist")
    else:
        raise BuildError(f"source {path.name} must be a .py file, a .zip archive or a directory")
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
    except zipfile.BadZipFile:
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
            if not _keep(rel):
                continue
            total += info.file_size
            _check_budget(total, len(files) + 1, max_bytes)
            files[str(rel)] = archive.read(info)
    return _strip_common_root(files)


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
