"""The records that cross the metadata database's boundary: APIs, versions, keys, calls, charges."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VersionRow:
    version: int
    bundle_hash: str
    limits: dict[str, int]
    rate_limit: dict[str, float] | None
    source_name: str
    requirements: list[str]
    created_at: float
    quota: dict[str, int] | None = None
    status: str = "ready"  # or "failed": a build that did not succeed, kept with its log
    build_log: str | None = None
    source_digest: str | None = None
    config: dict | None = None  # gateway.state.config: variables, sealed secrets, auth, CORS


@dataclass(frozen=True)
class ApiRow:
    id: str
    name: str
    active_version: int
    private: bool
    created_at: float
    updated_at: float
    owner: str | None = None  # the account managing it; None: only the admin
    paused: bool = False
    building_since: float | None = None
    building_by: str | None = None  # "<host>:<pid>" of the process running that build


@dataclass(frozen=True)
class AccountRow:
    id: str
    name: str
    plan: str
    created_at: float


@dataclass(frozen=True)
class KeyRow:
    id: str
    api_id: str
    digest: str
    created_at: float


@dataclass(frozen=True)
class InvocationRow:
    api_id: str
    time: float
    request_id: str
    version: int | None
    method: str
    path: str
    route: str | None
    status: int
    outcome: str
    fuel_used: int = 0
    duration_ms: float = 0.0
    bytes_in: int = 0
    bytes_out: int = 0
    stdout: str = ""
    stderr: str = ""
    logs_truncated: bool = False
    error_detail: str = ""


@dataclass
class Charge:
    """Calls and fuel to count against one key's quota period."""

    api_id: str
    key_id: str
    period: str
    requests: int
    fuel: int
