"""Errors: `HTTPException`, request validation errors, and the uniform JSON error body.

Every error response has the body `{"error": {"code", "message", "details"}}`.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from ._responses import HeadersInput, JSONResponse, Response

_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMITED",
}

# RFC 9110 names, which http.HTTPStatus only uses from Python 3.13: the same on every Python.
_PHRASES = {
    413: "Content Too Large",
    414: "URI Too Long",
    416: "Range Not Satisfiable",
    422: "Unprocessable Content",
}


def error_code(status_code: int) -> str:
    """The error code for a status: a name for the common ones, `HTTP_<status>` otherwise."""
    return _CODES.get(status_code, f"HTTP_{status_code}")


def status_phrase(status_code: int) -> str:
    """The standard reason phrase of a status, e.g. "Not Found"."""
    if status_code in _PHRASES:
        return _PHRASES[status_code]
    try:
        return HTTPStatus(status_code).phrase
    except ValueError:
        return f"HTTP {status_code}"


def error_response(
    status_code: int,
    code: str,
    message: str,
    details: Any = None,
    headers: HeadersInput | None = None,
) -> Response:
    """A JSON error response in the uniform shape."""
    body = {"error": {"code": code, "message": message, "details": {} if details is None else details}}
    return JSONResponse(body, status_code, headers)


class HTTPException(Exception):
    """Raise from a handler to answer with an error status.

    A str `detail` is the message; a dict or list `detail` becomes the details (with
    the standard phrase as message). `code` overrides the code derived from the status.
    """

    def __init__(
        self,
        status_code: int,
        detail: Any = None,
        headers: HeadersInput | None = None,
        *,
        code: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.detail = detail
        self.headers = headers
        self.code = code or error_code(status_code)
        structured = detail is None or isinstance(detail, (dict, list))
        self.message = status_phrase(status_code) if structured else str(detail)
        self.details: Any = detail if isinstance(detail, (dict, list)) else {}
        super().__init__(status_code, detail)

    def __str__(self) -> str:
        return f"{self.status_code} {self.code}: {self.message}"

    def to_response(self) -> Response:
        return error_response(self.status_code, self.code, self.message, self.details, self.headers)


class RequestValidationError(HTTPException):
    """422: parameters missing or not convertible. `errors` lists every problem found.

    Each error is `{"loc": [source, name, ...], "msg": reason, "input": value or None}`.
    """

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(422, {"errors": errors})
        self.errors = errors
        self.message = "invalid request: " + "; ".join(
            ".".join(str(part) for part in error["loc"]) + ": " + error["msg"] for error in errors
        )
