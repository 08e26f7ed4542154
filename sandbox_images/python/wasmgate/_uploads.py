"""Uploaded files: `UploadFile`, a lazily opened, read-only view of one multipart file."""

from __future__ import annotations

import io
from typing import BinaryIO


class UploadFile:
    """One file sent in a multipart/form-data request.

    In the sandbox the host writes each upload to a read-only directory and the file is
    opened from `path` on first use; tests build one in memory with `from_bytes`.
    """

    def __init__(
        self,
        filename: str = "",
        content_type: str = "application/octet-stream",
        size: int | None = None,
        path: str | None = None,
        field: str = "",
        file: BinaryIO | None = None,
    ) -> None:
        if (path is None) == (file is None):
            raise ValueError("UploadFile needs exactly one of path or file")
        self.filename = filename
        self.content_type = content_type
        self.size = size
        self.path = path
        self.field = field
        self._file = file

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        filename: str = "",
        content_type: str = "application/octet-stream",
        field: str = "",
    ) -> UploadFile:
        """An in-memory upload holding `data` (for tests)."""
        return cls(filename, content_type, len(data), field=field, file=io.BytesIO(data))

    @property
    def file(self) -> BinaryIO:
        """The underlying binary file object, opened on first access."""
        if self._file is None:
            assert self.path is not None
            self._file = open(self.path, "rb")
        return self._file

    def read(self, size: int = -1) -> bytes:
        return self.file.read(size)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self.file.seek(offset, whence)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def __enter__(self) -> UploadFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"UploadFile(field={self.field!r}, filename={self.filename!r}, "
            f"content_type={self.content_type!r}, size={self.size!r})"
        )
