"""Per-process scratch directories under a shared root, and clearing those of dead processes.

Several processes share one bundle store (a `serve`'s workers, `wasmgate worker`s), so each
keeps its instances' request directories in a directory named after its pid; one whose
process is gone is removed by the next process that starts.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def process_dir(root: Path) -> Path:
    """A new directory for this process under `root`; dead processes' leftovers are removed."""
    root.mkdir(parents=True, exist_ok=True)
    for entry in root.iterdir():
        pid = entry.name.split("-", 1)[0]
        if pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=root))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def gone(pid: str) -> bool:
    """Whether the process `pid` names is gone: not running, or a zombie (a killed process
    whose parent died too waits for an init that may reap it late, or never)."""
    if not pid.isdigit():
        return False
    if not alive(int(pid)):
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no procfs: trust the signal check
        return False
    return stat[stat.rindex(")") + 2 :][:1] in ("Z", "X")
