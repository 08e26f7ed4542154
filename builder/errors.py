"""The builder's one error type: everything an author can get wrong, said plainly, and
nothing of the build host (its paths, the engine's backtraces) in what is said."""

from __future__ import annotations

import re

# The engine's backtraces: wasm frames ("4: 0x3a0384 - libpython3.14.so!...") and the Rust
# frames after "Stack backtrace:". Host paths: anything absolute that is not a guest mount
# (/0/app.py) or part of a URL, and file: URLs.
_WASM_FRAME = re.compile(r"^\s*\d+: 0x[0-9a-f]+ - .*$\n?", re.MULTILINE)
_HOST_PATH = re.compile(r"file://\S+|(?<![\w/.:])/(?!\d+/)[^\s\"':,()]+")


class BuildError(Exception):
    """A build that cannot succeed; `details` is JSON-able (file, line, guest traceback, log)."""

    code = "BUILD_FAILED"

    def __init__(self, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


def without_host_details(text: str) -> str:
    """Tool output as an author may see it: no engine backtrace, host paths hidden."""
    text = _WASM_FRAME.sub("", text.split("Stack backtrace:", 1)[0])
    return _HOST_PATH.sub("<host path>", text).strip()
