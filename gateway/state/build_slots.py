"""How many builds run at once on this host, across the worker processes of one `serve`.

Each of `count` slot files under the data dir is one build slot; a build holds an exclusive
`flock` on one while its build process runs. The kernel drops the lock when the holder's
file is closed or its process dies, so a `kill -9` never leaves a slot taken. A build that
finds every slot taken says so in its progress and waits for one.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

POLL_S = 0.1


class BuildSlots:
    def __init__(self, directory: Path, count: int) -> None:
        self.directory = directory
        self.count = max(1, count)
        directory.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def held(self, on_wait: Callable[[], None] = lambda: None) -> Iterator[None]:
        """Hold a slot for the block; `on_wait` is told once if none is free at first."""
        fd = self._take()
        if fd is None:
            on_wait()
            while (fd := self._take()) is None:
                time.sleep(POLL_S)
        try:
            yield
        finally:
            os.close(fd)  # releases the lock

    def _take(self) -> int | None:
        for slot in range(self.count):
            fd = os.open(self.directory / f"{slot}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return fd
        return None
