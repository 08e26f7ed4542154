"""What a deploy asks for (name, requirements, limits, rate limit, quota), and the limits it
gets: asked for, else the previous version's, else the server's defaults, never above the
server's caps.
"""

from __future__ import annotations

from dataclasses import replace

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from gateway.errors import validation_error
from gateway.settings import Settings
from gateway.state.records import VersionRow
from runtime import Limits

# Bounds of every number a deploy may send, so that none overflows a database column or a
# float: counts fit a signed 64-bit integer, rates a billion per window, windows a year.
MAX_COUNT = 2**63 - 1
MAX_RATE = 10**9
MAX_WINDOW_S = 366 * 86_400
# Versions are stored as 32-bit integers (PostgreSQL's INTEGER).
MAX_VERSION = 2**31 - 1
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
# Limits an API may ask for, with the settings that cap them.
_CAPS = {
    "memory_mb": "max_memory_mb",
    "fuel": "max_fuel",
    "timeout_ms": "max_timeout_ms",
    "async_timeout_ms": "max_async_timeout_ms",  # for async jobs; unset: timeout_ms
}
_DEFAULTS = {"memory_mb": "default_memory_mb", "fuel": "default_fuel", "timeout_ms": "default_timeout_ms"}


class LimitsSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    memory_mb: int | None = Field(None, ge=16, le=MAX_COUNT)
    fuel: int | None = Field(None, ge=1, le=MAX_COUNT)
    timeout_ms: int | None = Field(None, ge=1, le=MAX_COUNT)
    async_timeout_ms: int | None = Field(None, ge=1, le=MAX_COUNT)


class RateLimitSpec(BaseModel):
    """Per key: `requests` per `per_seconds`, bursts up to `burst` (default `requests`);
    `api_requests`, if set, caps all keys of the API together over the same window."""

    model_config = ConfigDict(extra="forbid")
    requests: int = Field(ge=1, le=MAX_RATE)
    per_seconds: float = Field(gt=0, le=MAX_WINDOW_S)
    burst: int | None = Field(None, ge=1, le=MAX_RATE)
    api_requests: int | None = Field(None, ge=1, le=MAX_RATE)


class QuotaSpec(BaseModel):
    """Per key, per UTC day and month (see gateway.limits.quota)."""

    model_config = ConfigDict(extra="forbid")
    requests_per_day: int | None = Field(None, ge=1, le=MAX_COUNT)
    fuel_per_day: int | None = Field(None, ge=1, le=MAX_COUNT)
    requests_per_month: int | None = Field(None, ge=1, le=MAX_COUNT)
    fuel_per_month: int | None = Field(None, ge=1, le=MAX_COUNT)


class CorsSpec(BaseModel):
    """Cross-origin access to the API from browsers; preflights are answered by the gateway."""

    model_config = ConfigDict(extra="forbid")
    allow_origins: list[str] = Field(min_length=1, max_length=100)
    allow_methods: list[str] = Field(default_factory=lambda: ["GET", "POST", "PUT", "PATCH", "DELETE"], max_length=20)
    allow_headers: list[str] = Field(default_factory=list, max_length=100)
    max_age: int = Field(600, ge=0, le=86_400)


ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"


class ConfigSpec(BaseModel):
    """What an API may change without a rebuild (`PATCH /v1/apis/{id}`): a new version that
    reuses the bundle."""

    model_config = ConfigDict(extra="forbid")
    limits: LimitsSpec | None = None
    rate_limit: RateLimitSpec | None = None
    quota: QuotaSpec | None = None
    private: bool | None = None
    # The guest's os.environ: variables as they are, secrets sealed at rest and never shown.
    # A key set to null in a PATCH removes it.
    variables: dict[Annotated[str, StringConstraints(pattern=ENV_NAME)], str | None] | None = Field(None, max_length=200)
    secrets: dict[Annotated[str, StringConstraints(pattern=ENV_NAME)], str | None] | None = Field(None, max_length=200)
    auth: Literal["key", "public"] | None = None
    cors: CorsSpec | None = None


class ApiSpec(ConfigSpec):
    """What a create or update asks for, besides the source itself."""

    name: str | None = Field(None, pattern=NAME_PATTERN)
    requirements: list[str] | None = None


def stored_limits(settings: Settings, spec: ApiSpec, base: VersionRow | None) -> dict[str, int]:
    """The limits to store: asked for, else the previous version's, else the defaults.

    Asking for more than a server-wide cap is refused, naming the cap.
    """
    asked = spec.limits.model_dump(exclude_none=True) if spec.limits else {}
    errors = []
    for name, value in asked.items():
        cap = getattr(settings, _CAPS[name])
        if value > cap:
            env = f"WASMGATE_{_CAPS[name].upper()}"
            errors.append({"loc": ["limits", name], "msg": f"{value} exceeds the server cap {cap} ({env})"})
    if errors:
        raise validation_error(f"limits.{errors[0]['loc'][1]}: {errors[0]['msg']}", errors)
    previous = base.limits if base else {}
    limits = {
        name: asked.get(name, previous.get(name, getattr(settings, _DEFAULTS[name]))) for name in _DEFAULTS
    }
    if "async_timeout_ms" in asked or "async_timeout_ms" in previous:
        limits["async_timeout_ms"] = asked.get("async_timeout_ms", previous.get("async_timeout_ms"))
    return limits


def runtime_limits(settings: Settings, stored: dict[str, int]) -> Limits:
    """Stored limits as runtime Limits, clamped to today's caps (they may have been lowered)."""
    values = {name: min(stored[name], getattr(settings, _CAPS[name])) for name in _DEFAULTS}
    return Limits.from_mb(
        **values,
        max_response_bytes=settings.max_response_mb << 20,
        max_log_bytes=settings.max_log_kb << 10,
    )


def async_limits(settings: Settings, stored: dict[str, int]) -> Limits:
    """The limits of an async job: the same, but its own (capped) timeout."""
    limits = runtime_limits(settings, stored)
    asked = stored.get("async_timeout_ms", limits.timeout_ms)
    return replace(limits, timeout_ms=min(asked, settings.max_async_timeout_ms))
