"""The one place where failures become HTTP: status codes, the JSON error body, handlers.

Every error the gateway answers has the body `{"error": {"code", "message", "details"}}`;
the request-id middleware adds `X-Request-Id`. Sandbox outcomes (runtime `SandboxError`
codes) and build failures map to statuses here and nowhere else.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from builder.errors import BuildError
from runtime import SandboxError

SANDBOX_STATUS = {
    "SANDBOX_ERROR": 500,
    "SANDBOX_FUEL_EXHAUSTED": 504,
    "SANDBOX_TIMEOUT": 504,
    "SANDBOX_MEMORY_LIMIT": 500,
    "SANDBOX_OUTPUT_TOO_LARGE": 500,
    "SANDBOX_STACK_OVERFLOW": 500,
    "SANDBOX_TRAP": 500,
    # The caller went away; nobody reads this answer, but the log records it.
    "SANDBOX_CANCELLED": 499,
}

_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "AUTH_MISSING",
    403: "AUTH_INVALID",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMITED",
    503: "OVERLOADED",
}


class ApiError(Exception):
    """An error answer: raise it anywhere below a route and the handler renders it."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.details)

    def response(self) -> Response:
        return json_response(self.body(), self.status, self.headers)


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status, headers, media_type="application/json")


# -- constructors for the common cases ------------------------------------------------------


def not_found(message: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", message)


def validation_error(message: str, errors: list[dict[str, Any]] | None = None) -> ApiError:
    return ApiError(422, "VALIDATION_ERROR", message, {"errors": errors or []})


def payload_too_large(limit_bytes: int, what: str = "request body") -> ApiError:
    return ApiError(
        413, "PAYLOAD_TOO_LARGE", f"the {what} is larger than {limit_bytes} bytes", {"limit_bytes": limit_bytes}
    )


def client_disconnected() -> ApiError:
    """The caller hung up before its request had arrived: nobody reads this, the log records it."""
    return ApiError(499, "CLIENT_DISCONNECTED", "the caller closed the connection before the request arrived")


def overloaded(retry_after_s: int) -> ApiError:
    return ApiError(
        503, "OVERLOADED", "the gateway is at capacity; retry shortly", headers={"Retry-After": str(retry_after_s)}
    )


def api_busy(retry_after_s: int, per_api: int) -> ApiError:
    return ApiError(
        503,
        "API_BUSY",
        f"this API is already running {per_api} calls at once (its share of the gateway); retry shortly",
        {"per_api": per_api},
        headers={"Retry-After": str(retry_after_s)},
    )


def from_sandbox(error: SandboxError) -> ApiError:
    """The caller's view of a failed invocation: code, safe message and the failure's reason,
    never the detail (a traceback or trap message is for the API's logs)."""
    return ApiError(SANDBOX_STATUS.get(error.code, 500), error.code, error.message, {"reason": error.reason})


def from_build(error: BuildError, log_lines: list[str]) -> ApiError:
    details = dict(error.details)
    details.setdefault("log", "\n".join(log_lines))
    return ApiError(422, "BUILD_FAILED", error.message, details)


def from_pydantic(error: ValidationError, prefix: tuple = ()) -> ApiError:
    errors = [
        {"loc": [*prefix, *item["loc"]], "msg": item["msg"], "type": item["type"]} for item in error.errors()
    ]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(part) for part in first["loc"])
    return validation_error(f"{where}: {first['msg']}" if where else first["msg"], errors)


# -- handlers ---------------------------------------------------------------------------------


async def _api_error(_request: Request, exc: ApiError) -> Response:
    return exc.response()


async def _http_exception(_request: Request, exc: StarletteHTTPException) -> Response:
    code = _HTTP_CODES.get(exc.status_code, f"HTTP_{exc.status_code}")
    message = {404: "no such endpoint", 405: "method not allowed for this endpoint"}.get(
        exc.status_code, str(exc.detail)
    )
    return json_response(error_body(code, message), exc.status_code, dict(exc.headers or {}))


async def _request_validation(_request: Request, exc: RequestValidationError) -> Response:
    errors = [{"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]} for item in exc.errors()]
    return validation_error("the request is invalid", errors).response()


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _request_validation)


def internal_error_response() -> Response:
    """What the caller sees for a gateway bug (the traceback goes to the log)."""
    return json_response(error_body("INTERNAL_ERROR", "the gateway failed to handle the request"), 500)
