"""Captures a guest's stdout or stderr up to a byte cap, silently dropping the rest.

The guest never sees an error for output beyond the cap (an OSError would break the
handler); the report says the logs were truncated instead.
"""

from __future__ import annotations


class CappedCapture:
    def __init__(self, cap: int) -> None:
        self._room = cap
        self._chunks: list[bytes] = []
        self.truncated = False

    def write(self, data: bytes) -> int:
        """WASI output callback: keep what fits, report every byte as written."""
        kept = data[: self._room]
        if kept:
            self._chunks.append(kept)
            self._room -= len(kept)
        if len(kept) < len(data):
            self.truncated = True
        return len(data)

    def text(self) -> str:
        return b"".join(self._chunks).decode("utf-8", errors="replace")
