"""Moves a request into the guest and its response out, without `list<u8>`.

Small values cross as WIT strings. The raw body goes to the guest's stdin (bytes in one copy,
or a spooled file read by WASI directly); uploaded files stay on disk in one directory that
is preopened read-only at /request; the response body comes back as a WIT string, UTF-8
text as is and binary as latin-1 (one code point per byte).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import wasmtime
from wasmtime.component import Record

from runtime import capi

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


def configure_wasi(wasi: wasmtime.WasiConfig, request: SandboxRequest) -> None:
    """Put the request's bulk data where the guest reads it: stdin and /request."""
    if isinstance(request.body, Path):
        wasi.stdin_file = str(request.body)
    elif request.body:
        capi.set_stdin_bytes(wasi, request.body)
    if request.files:
        if request.upload_dir is None:
            raise ValueError("a request with files needs its upload_dir")
        upload_dir = request.upload_dir.resolve()
        for upload in request.files:
            if upload.path.resolve().parent != upload_dir:
                raise ValueError(f"upload {upload.path} is not directly inside {upload_dir}")
        wasi.preopen_dir(str(upload_dir), REQUEST_DIR_GUEST, fs_mutable=False)


def to_wit(request: SandboxRequest) -> Record:
    return _record(
        {
            "method": request.method.upper(),
            "path": request.path,
            "query": [tuple(pair) for pair in request.query],
            "headers": [(k.lower(), v) for k, v in request.headers],
            "form": [tuple(pair) for pair in request.form],
            "files": [_upload_record(u) for u in request.files],
            "body-size": request.body_size(),
        }
    )


def _upload_record(upload: Upload) -> Record:
    return _record(
        {
            "field": upload.field,
            "filename": upload.filename,
            "content-type": upload.content_type,
            "path": f"{REQUEST_DIR_GUEST}/{upload.path.name}",
            "size": upload.size,
        }
    )


def _record(fields: dict) -> Record:
    # wasmtime-py reads record fields by their WIT (kebab-case) names.
    record = Record()
    for name, value in fields.items():
        setattr(record, name, value)
    return record


def from_wit(response: Record) -> tuple[SandboxResponse, str | None]:
    """The guest's response, and the traceback it attached if the handler raised."""
    encoding = response.encoding
    codec = "latin-1" if _is_latin1(encoding) else "utf-8"
    body = response.body.encode(codec)
    headers = [(str(k), str(v)) for k, v in response.headers]
    return SandboxResponse(int(response.status), headers, body), response.error


def _is_latin1(encoding: object) -> bool:
    # wasmtime-py lifts a WIT enum case as its name.
    return str(encoding) == "latin1"
