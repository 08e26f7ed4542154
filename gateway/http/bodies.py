"""Reads a request body under a size cap into what the sandbox takes: form, files, raw body.

- `multipart/form-data`: files streamed into `<workdir>/files/` (never whole in memory),
  text fields into `form`;
- `application/x-www-form-urlencoded`: parsed into `form`, and the raw bytes kept as body;
- anything else: the raw bytes, moved to `<workdir>/body` once larger than `spool_bytes`.

The cap is checked against Content-Length before reading and against the bytes actually
received while reading (413 PAYLOAD_TOO_LARGE). A caller that hangs up before its body has
arrived gets 499 CLIENT_DISCONNECTED: nobody reads it, but the call's log records it. File
writes and parsing run in worker threads, a batch of up to BATCH_BYTES at a time (one thread
hop per MiB, not per chunk). The caller removes `workdir` when the request is done.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, BinaryIO
from urllib.parse import parse_qsl

import anyio
from starlette.requests import ClientDisconnect, Request

from gateway.errors import client_disconnected, payload_too_large, validation_error
from gateway.http.multipart import MultipartError, MultipartSpooler
from runtime import Upload

BATCH_BYTES = 1 << 20


@dataclass
class Body:
    form: list[tuple[str, str]] = field(default_factory=list)
    files: list[Upload] = field(default_factory=list)
    raw: bytes | Path = b""
    upload_dir: Path | None = None
    size: int = 0  # bytes received

    @property
    def on_disk(self) -> bool:
        """Whether anything of the body was written under the request's workdir."""
        return self.upload_dir is not None or isinstance(self.raw, Path)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _check_declared_size(request: Request, max_bytes: int, what: str = "request body") -> None:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise payload_too_large(max_bytes, what)


async def read_body(
    request: Request, workdir: Path, max_bytes: int, spool_bytes: int, what: str = "request body"
) -> Body:
    _check_declared_size(request, max_bytes, what)
    kind = media_type(request)
    if kind == "multipart/form-data":
        return await _read_multipart(request, workdir / "files", max_bytes, what)
    body = await _read_raw(request, workdir / "body", max_bytes, spool_bytes, what)
    if kind == "application/x-www-form-urlencoded" and isinstance(body.raw, bytes):
        body.form = parse_qsl(body.raw.decode("utf-8", errors="replace"), keep_blank_values=True)
    return body


async def _read_multipart(request: Request, upload_dir: Path, max_bytes: int, what: str) -> Body:
    try:
        spooler = MultipartSpooler(request.headers["content-type"], upload_dir)
    except MultipartError as error:
        raise validation_error(str(error)) from None
    size = 0
    pending: list[bytes] = []
    pending_size = 0
    try:
        async for chunk, size in _capped(request, max_bytes, what):
            pending.append(chunk)
            pending_size += len(chunk)
            if pending_size >= BATCH_BYTES:
                await anyio.to_thread.run_sync(spooler.feed, b"".join(pending))
                pending, pending_size = [], 0
        if pending_size:
            await anyio.to_thread.run_sync(spooler.feed, b"".join(pending))
        form, files = spooler.finish()
    except MultipartError as error:
        raise validation_error(str(error)) from None
    finally:
        spooler.close()
    return Body(form=form, files=files, upload_dir=upload_dir if files else None, size=size)


async def _read_raw(request: Request, spool_path: Path, max_bytes: int, spool_bytes: int, what: str) -> Body:
    buffer = bytearray()
    spool: BinaryIO | None = None
    size = 0
    try:
        async for chunk, size in _capped(request, max_bytes, what):
            buffer += chunk
            if spool is None and size <= spool_bytes:
                continue
            if spool is None:
                spool = await anyio.to_thread.run_sync(_open_spool, spool_path)
            if len(buffer) >= BATCH_BYTES:
                await anyio.to_thread.run_sync(spool.write, bytes(buffer))
                buffer = bytearray()
        if spool is not None and buffer:
            await anyio.to_thread.run_sync(spool.write, bytes(buffer))
    finally:
        if spool is not None:
            spool.close()
    return Body(raw=spool_path if spool is not None else bytes(buffer), size=size)


async def _capped(request: Request, max_bytes: int, what: str) -> AsyncIterator[tuple[bytes, int]]:
    """The body's chunks, each with the bytes received so far; 413 once that passes max_bytes,
    499 if the caller hangs up first."""
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise payload_too_large(max_bytes, what)
            yield chunk, size
    except ClientDisconnect:
        raise client_disconnected() from None


def _open_spool(path: Path) -> BinaryIO:
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "xb")
