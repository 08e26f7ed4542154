"""Long calls yield the CPU: a thread whose call has run past `LONG_CALL_S` is niced.

Worker threads share the machine's cores with each other and with the HTTP loop. A guest
that spins for seconds (a CPU bomb, or just a slow API) would take a core from every short
call queued behind the scheduler. So the thread running a call that has lasted longer than
`LONG_CALL_S` lowers its own OS priority by `NICE_STEPS` (Linux nice is per thread), and
gets it back when the call ends; short calls never pay for it.

Getting the priority back needs CAP_SYS_NICE or `RLIMIT_NICE` of at least 20 (`ulimit -e
20`, systemd's `LimitNICE=20`): where the process cannot, nothing is ever lowered (checked
once, on a throwaway thread), so a worker thread never stays niced.
"""

from __future__ import annotations

import functools
import os
import threading

LONG_CALL_S = 0.05
NICE_STEPS = 10


@functools.cache
def supported() -> bool:
    """Whether this process may lower a thread's priority and give it back."""
    if not hasattr(os, "setpriority"):
        return False
    result: list[bool] = []

    def probe() -> None:
        try:
            result.append(lower() is not None and _restored())
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, name="priority-probe")
    thread.start()
    thread.join()
    return result[0]


def _restored() -> bool:
    tid = threading.get_native_id()
    os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) - NICE_STEPS)
    return True


def lower() -> int | None:
    """Nice the calling thread; returns its previous nice value (None: not lowered)."""
    tid = threading.get_native_id()
    before = os.getpriority(os.PRIO_PROCESS, tid)
    if before + NICE_STEPS > 19:
        return None
    os.setpriority(os.PRIO_PROCESS, tid, before + NICE_STEPS)
    return before


def restore(before: int) -> None:
    """Give the calling thread its nice value back (it must be the thread that lowered it)."""
    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), before)
