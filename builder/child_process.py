"""What every process a build starts does first: die with the thread that started it.

PR_SET_PDEATHSIG (Linux) has the kernel kill this process when its parent thread ends, so a
`kill -9` of the gateway leaves no build (or pre-initialization) running on.
"""

from __future__ import annotations

import os
import signal


def die_with_parent(parent: int) -> None:
    """Arm PR_SET_PDEATHSIG; exit at once if `parent` is already gone (it died before that)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(1)
