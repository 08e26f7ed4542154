"""Responses: `Response`, `JSONResponse`, JSON encoding, and turning handler return values into responses."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Iterable, Mapping, Union

HeadersInput = Union[Mapping[str, str], Iterable[tuple[str, str]]]

# Statuses whose responses must not carry a body.
_NO_BODY_STATUSES = frozenset({204, 205, 304})


class Response:
    """An HTTP response: what handlers may return and what `App.dispatch` returns.

    `content` is bytes or str (UTF-8 encoded). Header names are stored lower-case and a
    content-type header is always present: `media_type` when given, otherwise one
    guessed from the content.
    """

    media_type: str | None = None

    def __init__(
        self,
        content: Any = b"",
        status_code: int = 200,
        headers: HeadersInput | None = None,
        media_type: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.body = self.render(content)
        self.headers = [(name.lower(), str(value)) for name, value in _header_pairs(headers)]
        if not any(name == "content-type" for name, _ in self.headers):
            self.headers.append(("content-type", _content_type(media_type or self.media_type, content)))

    def render(self, content: Any) -> bytes:
        if content is None:
            return b""
        if isinstance(content, str):
            return content.encode("utf-8")
        if isinstance(content, (bytes, bytearray, memoryview)):
            return bytes(content)
        raise TypeError(f"Response content must be bytes or str, not {type(content).__name__}")

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of header `name` (case-insensitive), or `default`."""
        name = name.lower()
        return next((value for key, value in self.headers if key == name), default)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status_code={self.status_code}, {len(self.body)} bytes)"


class JSONResponse(Response):
    """A response whose body is `content` encoded as JSON."""

    media_type = "application/json"

    def __init__(self, content: Any, status_code: int = 200, headers: HeadersInput | None = None) -> None:
        super().__init__(content, status_code, headers)

    def render(self, content: Any) -> bytes:
        return json_bytes(content)


def json_bytes(value: Any) -> bytes:
    """`value` as compact UTF-8 JSON; dataclass instances become objects."""
    try:
        return _dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates in a string: only escaped form is valid
        return _dumps(value, ensure_ascii=True).encode("ascii")


def to_response(value: Any, status_code: int) -> Response:
    """A handler's return value as a response: Responses pass through, anything else is JSON."""
    if isinstance(value, Response):
        return value
    if status_code in _NO_BODY_STATUSES and value is None:
        return Response(b"", status_code, media_type=JSONResponse.media_type)
    return JSONResponse(value, status_code)


def _dumps(value: Any, ensure_ascii: bool) -> str:
    return json.dumps(
        value, ensure_ascii=ensure_ascii, allow_nan=False, separators=(",", ":"), default=_encode_extra
    )


def _encode_extra(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _header_pairs(headers: HeadersInput | None) -> Iterable[tuple[str, str]]:
    if headers is None:
        return ()
    if isinstance(headers, Mapping):
        return headers.items()
    return headers


def _content_type(media_type: str | None, content: Any) -> str:
    if media_type is None:
        return "text/plain; charset=utf-8" if isinstance(content, str) else "application/octet-stream"
    if media_type.startswith("text/") and "charset=" not in media_type:
        return media_type + "; charset=utf-8"
    return media_type
