"""What crosses the host boundary: the request a caller made and the response a guest gave.

Small values cross as WIT strings (runtime.wit_codec lowers and lifts them). A raw body in
memory crosses by value as latin-1 text; a spooled body (a Path) and uploaded files cross as
files linked into the instance's request directory, preopened read-only at /request; the
response body comes back as a WIT string, UTF-8 text as is and binary as latin-1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


REQUEST_DIR_GUEST = "/request"


@dataclass(frozen=True)
class Upload:
    """A file the caller uploaded, already on disk inside the request's upload directory."""

    field: str
    filename: str
    content_type: str
    path: Path
    size: int


@dataclass
class SandboxRequest:
    method: str
    path: str
    query: list[tuple[str, str]] = field(default_factory=list)
    headers: list[tuple[str, str]] = field(default_factory=list)
    form: list[tuple[str, str]] = field(default_factory=list)
    files: list[Upload] = field(default_factory=list)
    body: bytes | Path = b""
    upload_dir: Path | None = None

    def body_size(self) -> int:
        return self.body.stat().st_size if isinstance(self.body, Path) else len(self.body)


@dataclass
class SandboxResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str, default: str | None = None) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), default)
