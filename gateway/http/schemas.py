"""The control plane's request and response shapes, for its OpenAPI document (`GET /openapi.json`).

The routes parse their bodies and build their answers themselves (gateway.http.control and
gateway.http.jobs); these models only describe them: a route declares its answer as
`response_model` (a route that returns a `Response` is never re-serialized) and its body with
`openapi_extra`, errors with `errors(...)`. The security schemes are FastAPI's, without
`auto_error`: they document the header, the routes' own checks decide.
"""

from __future__ import annotations

from typing import Any, Literal, get_args, get_origin

from fastapi.security import APIKeyHeader, HTTPBearer
from pydantic import BaseModel, Field

from gateway.state.specs import NAME_PATTERN, ApiSpec

BEARER_TOKEN = HTTPBearer(
    auto_error=False, scheme_name="BearerToken",
    description="The admin token (`WASMGATE_ADMIN_TOKEN`), or an account's token for its own APIs.",
)
API_KEY = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="ApiKey", description="An API key of the job's API."
)


# -- errors -----------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(examples=["NOT_FOUND"])
    message: str
    details: dict[str, Any]


class Error(BaseModel):
    """Every error the gateway answers."""

    error: ErrorDetail


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries: each status with the error body."""
    return {status: {"model": Error, "description": _ERROR_DESCRIPTIONS[status]} for status in statuses}


_ERROR_DESCRIPTIONS = {
    401: "No credentials (AUTH_MISSING)",
    403: "Wrong credentials (AUTH_INVALID)",
    404: "No such API (or not the caller's), version, key or job (NOT_FOUND)",
    409: "The request conflicts with the current state (CONFLICT)",
    413: "The upload is too large (PAYLOAD_TOO_LARGE)",
    422: "The request is invalid (VALIDATION_ERROR); a deploy's build failed (BUILD_FAILED)",
}
AUTH_ERRORS = errors(401, 403)


# -- deploys ----------------------------------------------------------------------------------


class DeployJson(ApiSpec):
    """A create or update as JSON: the fields of the spec and the module's text."""

    source: str = Field(description="The module's Python text (it is deployed as app.py).")


class CreateJson(DeployJson):
    name: str = Field(pattern=NAME_PATTERN)


class DeployForm(ApiSpec):
    """A create or update as multipart/form-data: the source as a file, the rest as fields
    (object-valued ones as JSON text); `name` is required on create."""

    source: bytes = Field(description="The module (.py) or the package (.zip).")
    requirements: bytes | None = Field(None, description="requirements.txt, as a file or as text.")
    private: bool | None = Field(None, description="1, true, yes or on for true.")


def deploy_body(json_model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` of a create or update: its JSON and multipart bodies."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _ref(json_model)},
                "multipart/form-data": {
                    "schema": _ref(DeployForm),
                    "encoding": {name: {"contentType": "application/json"} for name in _object_fields(DeployForm)},
                },
            },
        }
    }


def _object_fields(model: type[BaseModel]) -> list[str]:
    """The fields whose values are objects (sent as JSON text in a form)."""
    return [
        name for name, field in model.model_fields.items()
        if any(arg is dict or get_origin(arg) is dict or (isinstance(arg, type) and issubclass(arg, BaseModel))
               for arg in (get_args(field.annotation) or (field.annotation,)))
    ]


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": _ref(model)}}}}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    _REFERENCED[model.__name__] = model
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def referenced_models() -> list[type[BaseModel]]:
    """The models that bodies and streamed answers refer to, for the document's components."""
    return list(_REFERENCED.values())


_REFERENCED: dict[str, type[BaseModel]] = {}


class BuildEvent(BaseModel):
    """One line of a build streamed as `application/x-ndjson`: log lines, then the answer."""

    log: str | None = None
    status: int | None = Field(None, description="The HTTP status the answer would have had.")
    body: dict[str, Any] | None = Field(None, description="The answer (or the error body).")


def build_answer(status: int, model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """`responses=` of a create or update: the answer, or its build streamed."""
    streamed = {"application/x-ndjson": {"schema": _ref(BuildEvent)}}
    return {status: {"description": f"The build is done ({model.__name__}); with "
                                    "`Accept: application/x-ndjson`, its log streamed, one JSON object a line",
                     "content": streamed}}


# -- answers ----------------------------------------------------------------------------------


class ApiCreated(BaseModel):
    id: str
    name: str
    version: int
    status: Literal["active"]
    owner: str | None = Field(description="The account that manages it (null: the admin).")
    endpoint: str = Field(examples=["/run/0123456789ab"])
    api_key: str = Field(description="The API's first key: shown once.")
    key_id: str
    bundle_hash: str


class Unavailable(BaseModel):
    code: str
    reason: str
    message: str
    detail: str


class ApiSummary(BaseModel):
    id: str
    name: str
    status: Literal["active", "paused", "deploying", "unavailable"]
    paused: bool
    owner: str | None = Field(description="The account that manages it (null: the admin).")
    version: int
    active_version: int
    endpoint: str
    created_at: str
    updated_at: str
    error: Unavailable | None = Field(None, description="Why the active version cannot run on this host.")


class ApiList(BaseModel):
    apis: list[ApiSummary]


class Limits(BaseModel):
    memory_mb: int
    fuel: int
    timeout_ms: int
    max_response_bytes: int
    max_log_bytes: int
    async_timeout_ms: int


class Route(BaseModel):
    method: str
    path: str
    name: str
    summary: str | None


class Version(BaseModel):
    version: int
    status: Literal["ready", "failed"] = Field(description="failed: its build did not succeed (it never served).")
    active: bool
    bundle_hash: str | None
    source: str
    requirements: list[str]
    limits: dict[str, int]
    rate_limit: dict[str, Any] | None
    created_at: str
    build_log: str | None = Field(None, description="A failed build's log.")


class Cors(BaseModel):
    allow_origins: list[str]
    allow_methods: list[str]
    allow_headers: list[str]
    max_age: int


class ApiDescription(ApiSummary):
    private: bool
    limits: Limits
    rate_limit: dict[str, Any] | None
    quota: dict[str, int] | None
    variables: dict[str, str]
    secrets: list[str] = Field(description="The names of its secrets (their values are never shown).")
    auth: Literal["key", "public"]
    cors: Cors | None
    routes: list[Route]
    versions: list[Version]


class LogEntry(BaseModel):
    id: int = Field(description="Increasing; a follower's `Last-Event-ID`.")
    time: str
    request_id: str
    version: int
    method: str
    path: str
    route: str | None
    status: int
    outcome: str
    fuel_used: int
    duration_ms: float
    bytes_in: int
    bytes_out: int
    stdout: str
    stderr: str
    logs_truncated: bool
    error: str


class LogList(BaseModel):
    logs: list[LogEntry]


class UsageTotals(BaseModel):
    requests: int
    errors: dict[str, int] = Field(description="Calls by outcome, other than OK.")
    fuel: int
    bytes_in: int
    bytes_out: int
    duration_ms: float


class UsageHour(UsageTotals):
    hour: str


class KeyPeriod(BaseModel):
    period: str
    requests: int
    fuel: int


class KeyUsage(BaseModel):
    key_id: str
    day: KeyPeriod | None = None
    month: KeyPeriod | None = None


class Usage(BaseModel):
    api_id: str
    hours: list[UsageHour]
    totals: UsageTotals
    quota: dict[str, int] | None
    keys: list[KeyUsage]


SOURCE_ANSWER = {
    "description": "The version's source as deployed: the module or the package",
    "content": {
        "text/x-python": {"schema": {"type": "string"}},
        "application/zip": {"schema": {"type": "string", "contentMediaType": "application/zip"}},
    },
}


class KeyCreated(BaseModel):
    id: str
    prefix: str
    api_key: str = Field(description="The key itself: shown once.")
    created_at: str


class KeyInfo(BaseModel):
    id: str
    prefix: str
    created_at: str


class KeyList(BaseModel):
    keys: list[KeyInfo]


class JobResponse(BaseModel):
    status: int
    headers: list[tuple[str, str]] = Field(description="Name and value pairs, in order.")
    body: str
    body_encoding: Literal["utf-8", "base64"]
    outcome: str
    fuel_used: int
    duration_ms: float


class Job(BaseModel):
    job_id: str
    api_id: str
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    status: str = Field(description="The same as state.")
    attempts: int
    cancel_requested: bool
    created_at: str
    updated_at: str
    expires_at: str | None
    status_url: str
    response: JobResponse | None


class JobList(BaseModel):
    jobs: list[Job] = Field(description="Newest first.")
    next_cursor: str | None = Field(description="Pass it back as `cursor` for the next page (null: the last).")


LOG_STREAM = {
    "description": "The API's latest calls, newest first; with `follow=true` its calls as they happen: "
                   "Server-Sent Events (`id`, `data`: a LogEntry), or one LogEntry a line with "
                   "`Accept: application/x-ndjson`",
    "content": {
        "text/event-stream": {"schema": {"type": "string"}},
        "application/x-ndjson": {"schema": {"$ref": "#/components/schemas/LogEntry"}},
    },
}


# -- accounts ----------------------------------------------------------------------------------


class Plan(BaseModel):
    max_apis: int | None
    requests: int | None
    per_seconds: float
    requests_per_day: int | None


class Account(BaseModel):
    id: str
    name: str
    plan: str
    limits: Plan | None = Field(description="What the plan allows (null: a plan no longer configured).")
    created_at: str


class AccountCreated(Account):
    token: str = Field(description="The account's first token: shown once.")
    token_id: str


class AccountList(BaseModel):
    accounts: list[Account]


class TokenCreated(BaseModel):
    id: str
    account_id: str
    token: str = Field(description="The token itself: shown once.")
    created_at: str


class TokenInfo(BaseModel):
    id: str
    prefix: str
    created_at: str


class TokenList(BaseModel):
    tokens: list[TokenInfo]


class Me(BaseModel):
    role: Literal["admin", "account"]
    account: Account | None
    apis: int = Field(description="How many APIs it manages.")
