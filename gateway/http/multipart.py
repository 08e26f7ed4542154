"""Streaming `multipart/form-data` parsing: files go straight to disk, fields to memory.

`MultipartSpooler` is fed the body chunk by chunk (python-multipart's push parser), writes
every file part to its own file directly inside one directory (the sandbox preopens that
directory read-only), and keeps only the small text fields in memory. `feed` does blocking
file I/O: call it from a worker thread.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote_to_bytes

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from runtime import Upload

MAX_PARTS = 1000
MAX_FIELD_BYTES = 1 << 20
# RFC 5987 `filename*=charset'lang'value`; the value may be empty (an empty file name).
_EXTENDED_FILENAME = re.compile(rb"filename\*\s*=\s*[A-Za-z0-9_-]*'[^']*'([^;]*)", re.IGNORECASE)


class MultipartError(ValueError):
    """The body is not well-formed multipart/form-data (or breaks a part limit)."""


def boundary_of(content_type: str) -> bytes:
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise MultipartError("multipart/form-data without a boundary")
    return boundary


class MultipartSpooler:
    def __init__(self, content_type: str, directory: Path) -> None:
        self.directory = directory
        self.form: list[tuple[str, str]] = []
        self.files: list[Upload] = []
        self._parts = 0
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._field: str = ""
        self._data = bytearray()
        self._file: BinaryIO | None = None
        self._upload: tuple[str, str, str, Path] | None = None  # field, filename, content type, path
        self._size = 0
        self._parser = MultipartParser(
            boundary_of(content_type),
            {
                "on_part_begin": self._part_begin,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value_cb,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
            },
        )

    # -- driving ---------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except FormParserError as error:
            raise MultipartError(f"malformed multipart body: {error}") from None

    def finish(self) -> tuple[list[tuple[str, str]], list[Upload]]:
        try:
            self._parser.finalize()
        except FormParserError as error:
            raise MultipartError(f"malformed multipart body: {error}") from None
        if self._file is not None or self._headers:
            raise MultipartError("the multipart body ends in the middle of a part")
        return self.form, self.files

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    # -- parser callbacks ------------------------------------------------------------------

    def _part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise MultipartError(f"more than {MAX_PARTS} parts")
        self._headers = {}
        self._data = bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_cb(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        disposition = self._headers.get(b"content-disposition", b"")
        _, options = parse_options_header(disposition)
        if b"name" not in options:
            raise MultipartError('a part has no Content-Disposition "name"')
        self._field = _text(options[b"name"])
        extended = _EXTENDED_FILENAME.search(disposition)  # RFC 5987 filename*=utf-8''...
        if extended:
            options[b"filename"] = unquote_to_bytes(extended.group(1).strip(b'"'))
        if b"filename" in options:
            path = self.directory / f"upload-{len(self.files):04d}"
            content_type = _text(self._headers.get(b"content-type", b"")) or "application/octet-stream"
            self.directory.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "xb")
            self._upload = (self._field, _text(options[b"filename"]), content_type, path)
            self._size = 0

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            self._file.write(data[start:end])
            self._size += end - start
            return
        if len(self._data) + end - start > MAX_FIELD_BYTES:
            raise MultipartError(f"form field {self._field!r} is larger than {MAX_FIELD_BYTES} bytes")
        self._data += data[start:end]

    def _part_end(self) -> None:
        if self._file is not None and self._upload is not None:
            self._file.close()
            self._file = None
            field, filename, content_type, path = self._upload
            self.files.append(Upload(field, filename, content_type, path, self._size))
        else:
            self.form.append((self._field, _text(bytes(self._data))))
        self._headers = {}


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")
