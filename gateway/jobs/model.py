"""Async jobs: their states, what a queue stores of a request and of its answer, the queue contract.

A job is `queued`, then `running` (`attempts` counts the times a worker took it: more than one
means a worker died, or gave it back at shutdown, and it ran again), then `succeeded` (the
guest answered, whatever its status), `failed` (the sandbox stopped it or it could not run:
the stored response is the JSON error the synchronous call would have answered) or
`cancelled`. A finished job's record expires `job_result_ttl_s` after it finished.

Requests are stored as JSON (method, path, query, headers, form, upload metadata, the
submitting request's id) plus the body bytes and the uploaded files, which each backend keeps
its own way. Responses are stored as JSON with the body in base64.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson
from starlette.responses import Response

from gateway.errors import ApiError
from runtime import InvocationReport, SandboxRequest, Upload

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
FINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})


def new_job_id() -> str:
    return secrets.token_hex(16)


def status_url(job_id: str) -> str:
    return f"/v1/jobs/{job_id}"


# -- requests ---------------------------------------------------------------------------------


def request_meta(request: SandboxRequest, request_id: str) -> dict[str, Any]:
    """Everything of a request but its body and file contents (uploads are named by file name)."""
    return {
        "method": request.method,
        "path": request.path,
        "query": request.query,
        "headers": request.headers,
        "form": request.form,
        "files": [
            {"field": u.field, "filename": u.filename, "content_type": u.content_type, "size": u.size,
             "name": u.path.name}
            for u in request.files
        ],
        "request_id": request_id,
    }


def rebuild_request(meta: dict[str, Any], body: bytes | Path, upload_dir: Path) -> SandboxRequest:
    """The SandboxRequest again, its uploads read from `upload_dir`."""
    files = [
        Upload(f["field"], f["filename"], f["content_type"], upload_dir / f["name"], f["size"])
        for f in meta["files"]
    ]
    return SandboxRequest(
        method=meta["method"],
        path=meta["path"],
        query=[tuple(pair) for pair in meta["query"]],
        headers=[tuple(pair) for pair in meta["headers"]],
        form=[tuple(pair) for pair in meta["form"]],
        files=files,
        body=body,
        upload_dir=upload_dir if files else None,
    )


# -- results ----------------------------------------------------------------------------------


def response_result(response: Response, report: InvocationReport) -> dict[str, Any]:
    """The guest's answer, as the data plane would have sent it, for storing."""
    headers = [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in response.raw_headers
        if name != b"content-length"
    ]
    return _result(response.status_code, headers, response.body, "OK", report)


def error_result(error: ApiError, report: InvocationReport | None = None) -> dict[str, Any]:
    """The JSON error answer the synchronous call would have given, for storing."""
    body = orjson.dumps(error.body())
    return _result(error.status, [("content-type", "application/json")], body, error.code, report)


def _result(
    status: int, headers: list[tuple[str, str]], body: bytes, outcome: str, report: InvocationReport | None
) -> dict[str, Any]:
    report = report or InvocationReport()
    return {
        "status": status,
        "headers": headers,
        "body_base64": base64.b64encode(body).decode("ascii"),
        "outcome": outcome,
        "fuel_used": report.fuel_used,
        "duration_ms": round(report.wall_ms, 3),
    }


def result_body(result: dict[str, Any]) -> bytes:
    return base64.b64decode(result["body_base64"])


def response_view(result: dict[str, Any]) -> dict[str, Any]:
    """A stored answer for the caller: the body as text when it is UTF-8, else base64."""
    body = result_body(result)
    try:
        text, encoding = body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = result["body_base64"], "base64"
    view = {k: v for k, v in result.items() if k != "body_base64"}
    return {**view, "body": text, "body_encoding": encoding}


# -- records and the queue contract -----------------------------------------------------------


@dataclass(frozen=True)
class JobRecord:
    id: str
    api_id: str
    state: str
    attempts: int
    cancel_requested: bool
    created_at: float
    updated_at: float
    expires_at: float | None
    result: dict[str, Any] | None


@dataclass(frozen=True)
class Claim:
    """A job a worker took: `attempt` fences its renewals and its finish against a takeover."""

    job_id: str
    api_id: str
    attempt: int
    meta: dict[str, Any]
    consumer: str
    ref: str = ""  # backend-specific: the stream entry id in Redis


def abandoned_result(attempts: int) -> dict[str, Any]:
    return error_result(
        ApiError(500, "JOB_ABANDONED", f"the job was started {attempts - 1} times and never finished; given up")
    )


class JobQueue(Protocol):
    """Where jobs wait and their records live. Every method is safe to call from several
    processes at once; `claim`ed jobs not renewed within the lease are claimed again."""

    backend: str

    async def submit(self, job_id: str, api_id: str, request: SandboxRequest, request_id: str) -> None:
        """Store the job durably (the request's spooled body and upload dir may be moved away)."""

    async def claim(self, consumer: str, wait_s: float) -> Claim | None:
        """The next job to run, waiting up to `wait_s` for one; marks it running."""

    async def materialize(self, claim: Claim, workdir: Path) -> SandboxRequest:
        """The claimed job's request, its files on disk (under `workdir` if they must be written)."""

    async def renew(self, claim: Claim) -> bool:
        """Extend the lease; False if the job is no longer this claim's (taken over)."""

    async def wait_cancel(self, claim: Claim) -> None:
        """Return once cancelling the claimed job was asked for."""

    async def finish(self, claim: Claim, state: str, result: dict[str, Any] | None) -> bool:
        """Store the outcome; False (and nothing stored) if the job is no longer this claim's."""

    async def release(self, claim: Claim) -> None:
        """Give the job back to the queue at once (the worker is stopping)."""

    async def depth(self) -> dict[str, int]:
        """How many jobs are queued and running (for metrics)."""

    async def get(self, job_id: str) -> JobRecord | None:
        """The job, or None when unknown or expired."""

    async def cancel(self, job_id: str) -> JobRecord | None:
        """Cancel a queued job at once, ask a running one to stop; the record after that."""

    async def list(self, api_ids: list[str], state: str | None, limit: int, before: float | None) -> list[JobRecord]:
        """Jobs of these APIs (not expired), newest first, created before `before`, in `state` if given."""

    async def aclose(self) -> None: ...
