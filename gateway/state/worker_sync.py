"""Keeps the worker processes of one `wasmgate serve --workers N` in step, through the data dir.

Each process registers a file in `<data dir>/workers/` (named by its pid) holding how far it
has read the shared change log, `workers/changes`. A process that commits a change (deploy,
hot swap, rollback, delete, key created or revoked) appends the API's id there under an
exclusive lock; every process polls the log's size every POLL_S, re-reads the APIs it names
and records how far it got. The process that made the change waits until every other live
process has read past it (at most ACK_TIMEOUT_S), so a change is on all of them before it is
answered. A `flush` entry asks each process to write out its queued call log: reads of logs
and usage wait for that, so they see calls answered by any process.

Also here: which process runs start-up tasks once (`is_leader`), and `die_with_parent`, so that
a `kill -9` of `wasmgate serve` takes its workers with it.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable

from runtime.scratch import alive

log = logging.getLogger("wasmgate.workers")

POLL_S = 0.01
ACK_TIMEOUT_S = 5.0
CHANGES = "changes"
LEADER = "leader.lock"


def reset(directory: Path) -> None:
    """Start a `serve` with an empty change log (called once, by the parent, before the workers)."""
    directory.mkdir(parents=True, exist_ok=True)
    for entry in directory.iterdir():
        entry.unlink()
    (directory / CHANGES).touch()


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no-op elsewhere)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


class WorkerSync:
    def __init__(self, directory: Path, refresh: Callable[[str], None], flush: Callable[[], None]) -> None:
        """Register this process; changes logged from now on reach `refresh` (an API id) and
        `flush` (write out the call log). Register before loading the APIs at start."""
        self.directory = directory
        self._refresh, self._flush = refresh, flush
        self.pid = os.getpid()
        self._changes = directory / CHANGES
        self._offset = self._changes.stat().st_size
        self._mark(self._offset)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wasmgate-workers", daemon=True)
        self._leader_fd: int | None = None
        self.applied_total = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        (self.directory / str(self.pid)).unlink(missing_ok=True)

    def is_leader(self) -> bool:
        """True in exactly one live worker (the first to ask holds the lock until it exits)."""
        if self._leader_fd is None:
            fd = os.open(self.directory / LEADER, os.O_CREAT | os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            self._leader_fd = fd
        return True

    # -- telling the others -----------------------------------------------------------------

    def changed(self, api_id: str) -> None:
        """`api_id` changed here: return once every other worker has re-read it."""
        self._tell({"api": api_id})

    def flush_all(self) -> None:
        """Return once every other worker has written out its queued call log."""
        self._tell({"flush": True})

    def _tell(self, entry: dict) -> None:
        line = (json.dumps({**entry, "pid": self.pid}) + "\n").encode()
        with open(self._changes, "ab") as changes:
            fcntl.flock(changes, fcntl.LOCK_EX)
            try:
                changes.write(line)
                changes.flush()
                target = changes.tell()
            finally:
                fcntl.flock(changes, fcntl.LOCK_UN)
        deadline = time.monotonic() + ACK_TIMEOUT_S
        while (behind := self._behind(target)) and time.monotonic() < deadline:
            time.sleep(POLL_S / 2)
        if behind:
            log.warning("workers %s did not apply a change within %.0f s", behind, ACK_TIMEOUT_S)

    def _behind(self, target: int) -> list[int]:
        """Live workers other than this one that have not read up to `target`."""
        behind = []
        for entry in self.directory.iterdir():
            if not entry.name.isdigit() or int(entry.name) == self.pid:
                continue
            pid = int(entry.name)
            if not alive(pid):
                entry.unlink(missing_ok=True)
                continue
            try:
                seen = int(entry.read_text() or 0)
            except (OSError, ValueError):
                seen = 0
            if seen < target:
                behind.append(pid)
        return behind

    # -- hearing from them -------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopped.wait(POLL_S):
            try:
                if self._changes.stat().st_size > self._offset:
                    self._apply_new()
            except Exception:  # a bad line or a failed re-read must not stop the thread
                log.exception("applying another worker's change failed")

    def _apply_new(self) -> None:
        with open(self._changes, "rb") as changes:
            changes.seek(self._offset)
            data = changes.read()
        complete = data[: data.rfind(b"\n") + 1]
        for line in complete.splitlines():
            entry = json.loads(line)
            if entry.get("pid") == self.pid:
                continue
            if entry.get("flush"):
                self._flush()
            elif "api" in entry:
                self._refresh(entry["api"])
            self.applied_total += 1
        self._offset += len(complete)
        self._mark(self._offset)

    def _mark(self, offset: int) -> None:
        mine = self.directory / str(self.pid)
        tmp = mine.with_suffix(".tmp")
        tmp.write_text(str(offset))
        os.replace(tmp, mine)
