"""Knowing that this process is stopping, for the streams that would otherwise hold it open.

uvicorn stops on SIGTERM or SIGINT by waiting for open connections to finish, and a follower of
a log (`GET /v1/apis/{id}/logs?follow=true`) never finishes by itself: `watch_signals()`, called
from the app's start-up in the main thread, puts a handler before uvicorn's that sets
`STOPPING`, and streams end when it is set (their clients reconnect, e.g. with
`Last-Event-ID`, to the next process).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

STOPPING = threading.Event()


def watch_signals() -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # signals reach only the main thread (e.g. an app under a test client)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _chained(signal.getsignal(sig)))


def _chained(previous: Any):  # noqa: ANN202
    def handler(signum: int, frame: FrameType | None) -> None:
        STOPPING.set()
        if callable(previous):
            previous(signum, frame)

    return handler
