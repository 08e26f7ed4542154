"""The builder's one error type: everything an author can get wrong, said plainly."""

from __future__ import annotations


class BuildError(Exception):
    """A build that cannot succeed; `details` is JSON-able (file, line, guest traceback, log)."""

    code = "BUILD_FAILED"

    def __init__(self, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
