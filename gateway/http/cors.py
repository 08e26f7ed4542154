"""Per-API CORS: preflights answered by the gateway (no key, no sandbox), and the
`Access-Control-Allow-Origin` of actual responses, from the API's `cors` policy
({"allow_origins", "allow_methods", "allow_headers", "max_age"}; "*" allows any origin).
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers
from starlette.responses import Response


def is_preflight(method: str, headers: Headers) -> bool:
    return method == "OPTIONS" and "origin" in headers and "access-control-request-method" in headers


def _allowed_origin(policy: dict[str, Any], origin: str | None) -> str | None:
    if not origin:
        return None
    origins = policy["allow_origins"]
    if "*" in origins:
        return "*"
    return origin if origin in origins else None


def preflight(policy: dict[str, Any], headers: Headers) -> Response:
    """The answer to a preflight: 204 with what is allowed, or 403 if the origin, method or
    headers asked for are not."""
    origin = _allowed_origin(policy, headers.get("origin"))
    method = headers.get("access-control-request-method", "").upper()
    methods = [m.upper() for m in policy["allow_methods"]]
    asked = [h.strip().lower() for h in headers.get("access-control-request-headers", "").split(",") if h.strip()]
    allowed_headers = [h.lower() for h in policy["allow_headers"]]
    if origin is None or ("*" not in methods and method not in methods) or (
        "*" not in allowed_headers and any(h not in allowed_headers for h in asked)
    ):
        return Response(status_code=403, headers={"Vary": "Origin"})
    return Response(
        status_code=204,
        headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": ", ".join(methods),
            "Access-Control-Allow-Headers": ", ".join(asked if "*" in allowed_headers else policy["allow_headers"]),
            "Access-Control-Max-Age": str(policy["max_age"]),
            "Vary": "Origin",
        },
    )


def add_headers(policy: dict[str, Any], headers: Headers, response: Response) -> None:
    """Let the browser read an actual response from an allowed origin."""
    origin = _allowed_origin(policy, headers.get("origin"))
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
