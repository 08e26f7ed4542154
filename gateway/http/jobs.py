"""Async jobs over HTTP: submitting (`Prefer: respond-async` on the data plane), `GET` and
`DELETE /v1/jobs/{job_id}` with an API key of the job's API.

`GET` answers the job's record: `state` (queued | running | succeeded | failed | cancelled;
also as `status`), `attempts`, times, and once finished `response` (`status`, `headers`, `body` with
`body_encoding` utf-8 or base64, `outcome`, `fuel_used`, `duration_ms`). `DELETE` cancels:
a queued job at once, a running one is interrupted in its sandbox; the answer (200) is the
final record, or 202 with the record if the job still runs after `CANCEL_WAIT_S` (its
worker is gone: it is cancelled when taken over). A job that had already finished: 409
CONFLICT, with its state in the details. Unknown or expired jobs: 404.

`GET /v1/jobs?api=ID&state=STATE&limit=N&cursor=C` lists jobs, newest first: with the admin
token any API's (all without `api`), with an account token its own APIs', with an API key its
API's. The answer is `{"jobs": [...], "next_cursor"}`; pass `next_cursor` back for the next page
(null: the last page).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import anyio
from fastapi import APIRouter, Query, Request, Security
from starlette.responses import Response

from gateway.errors import ApiError, json_response, not_found, validation_error
from gateway.http.schemas import API_KEY, BEARER_TOKEN, Job, JobList, errors
from gateway.jobs.model import FINAL, JobRecord, new_job_id, response_view, status_url
from gateway.services import Services, services
from gateway.settings import Settings
from gateway.state import auth
from gateway.state.views import iso
from runtime import SandboxRequest

CANCEL_WAIT_S = 2.0

# Security(API_KEY) only documents the header (gateway.http.schemas); `_job` checks the key.
router = APIRouter(
    prefix="/v1/jobs", dependencies=[Security(API_KEY)], responses=errors(401, 403, 404, 422), tags=["jobs"]
)


def prefers_async(request: Request) -> bool:
    """True when a `Prefer` header asks for `respond-async` (RFC 7240)."""
    return any(
        preference.split(";", 1)[0].split("=", 1)[0].strip().lower() == "respond-async"
        for header in request.headers.getlist("prefer")
        for preference in header.split(",")
    )


def body_cap(settings: Settings, is_async: bool) -> int:
    """The largest request body accepted, in bytes."""
    if is_async and settings.max_async_body_mb is not None:
        return settings.max_async_body_mb << 20
    return settings.max_body_mb << 20


async def submit(svc: Services, api_id: str, request: SandboxRequest, request_id: str) -> Response:
    """Queue the request as a job (stored durably first) and answer 202 with where to poll."""
    job_id = new_job_id()
    await svc.jobs.submit(job_id, api_id, request, request_id)
    url = status_url(job_id)
    headers = {"Location": url, "Preference-Applied": "respond-async"}
    return json_response({"job_id": job_id, "status_url": url}, 202, headers)


def job_view(job: JobRecord) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "api_id": job.api_id,
        "state": job.state,
        "status": job.state,  # the same, under the name the API records use
        "attempts": job.attempts,
        "cancel_requested": job.cancel_requested,
        "created_at": iso(job.created_at),
        "updated_at": iso(job.updated_at),
        "expires_at": iso(job.expires_at) if job.expires_at is not None else None,
        "status_url": status_url(job.id),
        "response": response_view(job.result) if job.result is not None else None,
    }


async def _job(request: Request, job_id: str) -> JobRecord:
    svc = services(request)
    job = await svc.jobs.get(job_id)
    if job is None:
        raise not_found(f"no job {job_id} (unknown, or its result expired)")
    deployment = svc.deployments.registry.get(job.api_id)
    if deployment is None or not deployment.public:  # a public API's callers have no key: the id is the secret
        svc.deployments.keys.verify(job.api_id, request.headers)
    return job


# An API key, or the admin's or an account's token (either security scheme).
@router.get("", response_model=JobList, dependencies=[Security(BEARER_TOKEN)])
async def list_jobs(
    request: Request,
    api: str | None = None,
    state: str | None = Query(None, pattern="^(queued|running|succeeded|failed|cancelled)$"),
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
) -> Response:
    svc = services(request)
    api_ids = await anyio.to_thread.run_sync(_listable_apis, request, api)
    before = None
    if cursor is not None:
        try:
            before = float(cursor)
        except ValueError:
            raise validation_error("cursor: pass back the `next_cursor` of the previous page",
                                   [{"loc": ["query", "cursor"], "msg": "invalid cursor"}]) from None
    found = await svc.jobs.list(api_ids, state, limit + 1, before)
    page = found[:limit]
    next_cursor = repr(page[-1].created_at) if len(found) > limit else None
    return json_response({"jobs": [job_view(job) for job in page], "next_cursor": next_cursor})


def _listable_apis(request: Request, api: str | None) -> list[str]:
    """The APIs whose jobs the caller may list (restricted to `api` if given); blocking."""
    svc = services(request)
    presented = auth.presented_api_key(request.headers)
    if presented is not None and auth.key_id_of(presented) is not None:  # an API key
        api_id = svc.deployments.keys.api_of(presented)
        if api_id is None or (api is not None and api != api_id):
            raise ApiError(403, "AUTH_INVALID", "the API key is not valid for this API")
        svc.deployments.keys.verify(api_id, request.headers)
        return [api_id]
    who = svc.accounts.identify(request.headers)
    if api is not None:
        return [svc.deployments.check_access(api, who).id]
    return [row.id for row in (svc.db.list_apis() if who.is_admin else svc.db.list_apis(who.owner))]


@router.get("/{job_id}", response_model=Job)
async def get_job(request: Request, job_id: str) -> Response:
    return json_response(job_view(await _job(request, job_id)))


@router.delete(
    "/{job_id}", response_model=Job,
    responses={202: {"model": Job, "description": "Cancelling: the job still runs"}, **errors(409)},
)
async def cancel_job(request: Request, job_id: str) -> Response:
    job = await _job(request, job_id)
    if job.state in FINAL:
        raise ApiError(409, "CONFLICT", f"the job has already {job.state}", {"state": job.state})
    jobs = services(request).jobs
    record = await jobs.cancel(job_id)
    deadline = time.monotonic() + CANCEL_WAIT_S
    while record is not None and record.state not in FINAL and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
        record = await jobs.get(job_id)
    if record is None:
        raise not_found(f"no job {job_id} (its result expired)")
    return json_response(job_view(record), 200 if record.state in FINAL else 202)
