"""Files written so that a process killed at any moment leaves the old state or the new one:
whole-file replacement by rename, fsync of a tree before it is renamed in, and an exclusive
lock between processes that dies with its holder."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock between the processes using this store (released if one dies)."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_atomically(target: Path, data: bytes) -> None:
    """Write `data` to `target` whole or not at all (a temporary file named after this
    process, synced, then renamed over it); the temporary file is removed on failure."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f"{target.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    sync_dir(target.parent)


def sync_tree(root: Path) -> None:
    """fsync every file and directory under `root` (a staging bundle, before it is renamed in)."""
    for directory, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        sync_dir(Path(directory))


def sync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
