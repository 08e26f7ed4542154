"""The data plane: `ANY /run/{id}/{path}` runs one request of a deployed API in a sandbox.

Order of checks: the API exists (404), the key is valid for it (401/403), its rate limit
(429), the body fits (413), a worker is free soon enough (503); then the sandbox call on the
worker pool, or on the event loop's own thread when nothing else is in flight and the API's
calls are short (gateway.limits.inline). The guest's status, headers and body come back as
they are, plus `X-Wasmgate-Fuel` and `X-Wasmgate-Duration-Ms`. Every call is logged under its API and
counted (gateway.metrics).
With `Prefer: respond-async` the request is queued as a job instead (202, gateway.http.jobs).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from fastapi import APIRouter, Request
from starlette.convertors import PathConvertor, register_url_convertor
from starlette.background import BackgroundTask, BackgroundTasks
from starlette.responses import Response

from gateway import metrics
from gateway.errors import ApiError, api_busy, from_sandbox, not_found, overloaded
from gateway.http import cors, docs, jobs
from gateway.http.bodies import Body, read_body
from gateway.limits.pool import ApiBusy, Overloaded
from gateway.responses import HOP_BY_HOP, guest_response
from gateway.services import Services, services
from gateway.state.config import redact
from gateway.state.records import InvocationRow
from gateway.state.registry import Deployment
from runtime import Invocation, InvocationReport, SandboxError, SandboxRequest
from runtime.marshalling import context_header

log = logging.getLogger("wasmgate.gateway")

router = APIRouter()

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
# Not passed to the guest: our own auth and request id, and hop-by-hop fields.
_DROP_REQUEST = HOP_BY_HOP | {"x-api-key", "x-request-id", "expect", "proxy-authorization"}
# A call still running after this long starts watching for the caller's disconnect.
WATCH_AFTER_S = 0.05


def _deployment(request: Request, api_id: str) -> Deployment:
    deployment = services(request).deployments.registry.get(api_id)
    if deployment is None:
        raise not_found(f"no API {api_id}")
    return deployment


# The gateway's pages of an API (gateway.http.docs), unless a route of the API answers the
# path: then that route wins, and the pages stay under /_wasmgate/apis/{id}/.
@router.get("/run/{api_id}/openapi.json", include_in_schema=False)
async def openapi_json(request: Request, api_id: str) -> Response:
    deployment = _deployment(request, api_id)
    if docs.claimed(deployment, "/openapi.json"):
        return await run(request, api_id, "openapi.json")
    return docs.api_document(request, deployment)


@router.get("/run/{api_id}/docs", include_in_schema=False)
async def docs_page(request: Request, api_id: str) -> Response:
    deployment = _deployment(request, api_id)
    if docs.claimed(deployment, "/docs"):
        return await run(request, api_id, "docs")
    return docs.api_page(deployment)


@dataclass
class _Call:
    """What the log records about one call, filled in as it proceeds."""

    status: int = 500
    outcome: str = "OK"
    fuel_used: int = 0
    duration_ms: float | None = None
    stdout: str = ""
    stderr: str = ""
    logs_truncated: bool = False
    error_detail: str = ""
    headers: dict[str, str] = field(default_factory=dict)


async def _rate_limit(svc: Services, deployment: Deployment, key_id: str, call: _Call) -> None:
    """Count the call against its key's bucket (a public API's: its client's), the API's if it
    has one, and its owner account's plan; 429 if over any."""
    limit = deployment.rate_limit or svc.settings.default_rate_limit()
    decision = await svc.limiter.hit(f"key:{deployment.api_id}:{key_id}", limit, burst=limit.burst)
    api_limit = limit.for_api()
    if decision.allowed and api_limit is not None:
        api_decision = await svc.limiter.hit(f"api:{deployment.api_id}", api_limit)
        if not api_decision.allowed or api_decision.remaining < decision.remaining:
            decision = api_decision
    if decision.allowed and deployment.account_limit is not None:
        account = await svc.limiter.hit(f"account:{deployment.owner}", deployment.account_limit)
        if not account.allowed:
            call.headers.update(account.headers())
            metrics.RATE_LIMIT_LIMITED.inc()
            raise ApiError(429, "RATE_LIMITED", "the API's account is over its plan's rate; retry later",
                           {"scope": "account"})
    call.headers.update(decision.headers())
    if not decision.allowed:
        metrics.RATE_LIMIT_LIMITED.inc()
        raise ApiError(429, "RATE_LIMITED", "too many requests; retry later")
    metrics.RATE_LIMIT_ALLOWED.inc()
    if deployment.account_daily is not None:
        daily = await svc.limiter.hit(f"account-day:{deployment.owner}", deployment.account_daily)
        if not daily.allowed:
            metrics.QUOTA_REJECTIONS.labels("account_requests_per_day").inc()
            raise ApiError(
                429, "QUOTA_EXCEEDED", "the API's account has used its plan's requests for the last 24 hours",
                {"quota": "account_requests_per_day", "limit": deployment.account_daily.requests},
                {"Retry-After": str(max(1, int(daily.retry_after_s)))},
            )


async def _check_quota(svc: Services, deployment: Deployment, key_id: str) -> None:
    if not deployment.quota:
        return
    over = await anyio.to_thread.run_sync(svc.deployments.quota_exceeded, deployment, key_id)
    if over is not None:
        metrics.QUOTA_REJECTIONS.labels(over.what).inc()
        raise ApiError(
            429,
            "QUOTA_EXCEEDED",
            f"this key has used its quota ({over.what} = {over.limit})",
            {"quota": over.what, "limit": over.limit, "used": over.used},
            {"Retry-After": str(over.retry_after_s)},
        )


class _AnyPath(PathConvertor):
    """Starlette's `path` convertor (`.*`) stops at a newline, and its route's `$` matches
    before a final one: `/x%0A` would reach the guest as `/x`. The guest gets every byte."""

    regex = r"[\s\S]*"


register_url_convertor("anypath", _AnyPath())


@router.api_route("/run/{api_id}", methods=METHODS, include_in_schema=False)
@router.api_route("/run/{api_id}/{path:anypath}", methods=METHODS, include_in_schema=False)
async def run(request: Request, api_id: str, path: str = "") -> Response:
    inline = services(request).inline
    inline.in_flight += 1
    try:
        return await _run(request, api_id, path)
    finally:
        inline.in_flight -= 1


async def _run(request: Request, api_id: str, path: str) -> Response:
    svc = services(request)
    started = time.perf_counter()
    deployment = _deployment(request, api_id)
    if deployment.cors is not None and cors.is_preflight(request.method, request.headers):
        return cors.preflight(deployment.cors, request.headers)  # no key, no sandbox
    if deployment.public:  # limits and quotas count per client address
        key_id = f"ip:{request.client.host if request.client else 'unknown'}"
    else:
        key_id = svc.deployments.keys.verify(api_id, request.headers)
    api_path = "/" + path
    call = _Call()
    body = Body()
    workdir = svc.settings.requests_dir / uuid.uuid4().hex
    admitted = False
    on_disk = False  # whether `workdir` may hold files: from reading the body on, until it is known in memory
    try:
        if deployment.paused:
            raise ApiError(503, "API_PAUSED", f"API {deployment.name} is paused by its owner", {"api_id": api_id})
        await _rate_limit(svc, deployment, key_id, call)
        await _check_quota(svc, deployment, key_id)
        admitted = True
        is_async = jobs.prefers_async(request)
        max_body = jobs.body_cap(svc.settings, is_async)
        on_disk = True
        body = await read_body(request, workdir, max_body, svc.settings.spool_kb << 10)
        on_disk = body.on_disk
        sandbox_request = SandboxRequest(
            method=request.method,
            path=api_path,
            query=request.query_params.multi_items(),
            headers=_forward_headers(request, api_id),
            form=body.form,
            files=body.files,
            body=body.raw,
            upload_dir=body.upload_dir,
        )
        if is_async:  # queued; a job worker runs it (gateway.jobs.worker)
            response = await jobs.submit(svc, api_id, sandbox_request, request.state.request_id)
            call.status = response.status_code
        else:
            response = await _invoke(svc, deployment, sandbox_request, request, call)
    except ApiError as error:
        call.status, call.outcome = error.status, error.code
        response = error.response()
    except BaseException:
        if on_disk:
            await anyio.to_thread.run_sync(shutil.rmtree, workdir, True)
        raise
    if on_disk:  # after the answer has been sent: a 10 MB upload's file takes ~4 ms to remove
        response.background = _then_remove(response.background, workdir)
    for name, value in call.headers.items():  # rate limit state, fuel and duration
        response.headers.setdefault(name, value)
    if deployment.cors is not None:
        cors.add_headers(deployment.cors, request.headers, response)
    if deployment.hidden:  # secrets' values never reach the log
        call.stdout, call.stderr, call.error_detail = (
            redact(text, deployment.hidden) for text in (call.stdout, call.stderr, call.error_detail)
        )
    elapsed_s = time.perf_counter() - started
    ran = call.duration_ms is not None  # in a sandbox, which reported its fuel
    metrics.observe_call(api_id, call.status, call.outcome, elapsed_s, call.fuel_used if ran else None)
    entry = InvocationRow(
        api_id=api_id,
        time=time.time(),
        request_id=request.state.request_id,
        version=deployment.version,
        method=request.method,
        path=api_path,
        route=deployment.route_for(request.method, api_path),
        status=call.status,
        outcome=call.outcome,
        fuel_used=call.fuel_used,
        duration_ms=call.duration_ms if call.duration_ms is not None else elapsed_s * 1000,
        bytes_in=body.size,
        bytes_out=len(response.body),
        stdout=call.stdout,
        stderr=call.stderr,
        logs_truncated=call.logs_truncated,
        error_detail=call.error_detail,
    )
    charged_key = key_id if admitted and deployment.quota else None
    if charged_key is not None and svc.settings.processes > 1:
        # Quotas are checked against the database: with other worker processes checking too,
        # a charge is written before the answer, not behind it.
        await anyio.to_thread.run_sync(svc.deployments.record, entry, charged_key, True)
    else:
        svc.deployments.record(entry, charged_key)  # queued, written behind the request
    return response


async def _invoke(
    svc: Services, deployment: Deployment, sandbox_request: SandboxRequest, request: Request, call: _Call
) -> Response:
    """Run the call on the event loop's thread when that saves a hop (gateway.limits.inline),
    else on the worker pool."""
    api_id = deployment.api_id
    sandbox_request = sandbox_request.with_env(deployment.env)
    try:
        invocation = None
        if svc.inline.admits(api_id, svc.pool):
            invocation = svc.inline.run(api_id, svc.runtime.invoke, deployment.bundle, sandbox_request, deployment.limits)
            (metrics.INLINE_RAN if invocation is not None else metrics.INLINE_MOVED).inc()
        if invocation is None:
            invocation = await _on_pool(svc, deployment, sandbox_request, request)
    except ApiBusy as error:
        raise api_busy(error.retry_after_s, error.per_api) from None
    except Overloaded as error:
        raise overloaded(error.retry_after_s) from None
    except SandboxError as error:
        svc.inline.record(api_id, error.report.wall_ms)
        _note_report(call, error.report)
        call.error_detail = f"{error.message}\n{error.detail}".strip()
        log.warning(
            "API %s request %s: %s\n%s", api_id, request.state.request_id, error.code, error.detail
        )
        raise from_sandbox(error) from None
    svc.inline.record(api_id, invocation.report.wall_ms)
    _note_report(call, invocation.report)
    call.status = invocation.response.status
    return guest_response(invocation.response, _mount(api_id))


async def _on_pool(svc: Services, deployment: Deployment, sandbox_request: SandboxRequest, request: Request) -> Invocation:
    """Run the call on the worker pool; stop the guest if the caller disconnects meanwhile.

    The disconnect watcher starts only for a call still running after WATCH_AFTER_S: a fast
    call never pays for it.
    """
    cancel = threading.Event()
    loop = asyncio.get_running_loop()
    watcher: asyncio.Task | None = None

    async def watch_disconnect() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        cancel.set()

    def start_watching() -> None:
        nonlocal watcher
        watcher = loop.create_task(watch_disconnect())

    timer = loop.call_later(WATCH_AFTER_S, start_watching)
    try:
        return await svc.pool.run(
            deployment.api_id, svc.runtime.invoke, deployment.bundle, sandbox_request, deployment.limits, cancel
        )
    finally:
        timer.cancel()
        if watcher is not None:
            watcher.cancel()


def _note_report(call: _Call, report: InvocationReport) -> None:
    call.fuel_used = report.fuel_used
    call.duration_ms = report.wall_ms
    call.stdout, call.stderr, call.logs_truncated = report.stdout, report.stderr, report.logs_truncated
    call.headers["X-Wasmgate-Fuel"] = str(report.fuel_used)
    call.headers["X-Wasmgate-Duration-Ms"] = f"{report.wall_ms:.3f}"


def _then_remove(background: BackgroundTask | None, workdir: Path) -> BackgroundTasks:
    """The response's background work, if any, then removing the request's scratch files."""
    tasks = BackgroundTasks([background] if background is not None else [])
    tasks.add_task(shutil.rmtree, workdir, True)
    return tasks


def _mount(api_id: str) -> str:
    """The path the gateway serves an API under."""
    return f"/run/{api_id}"


def _forward_headers(request: Request, api_id: str) -> list[tuple[str, str]]:
    """The caller's headers for the guest, minus the API key, plus the request id and how the
    caller reached the API (the guest takes that one off: `request.client`, `url_for`)."""
    carried_key = "x-api-key" not in request.headers
    headers = [
        (name, value)
        for name, value in request.headers.items()
        if name not in _DROP_REQUEST
        and not name.startswith(("proxy-", "x-wasmgate-"))  # the platform's own, never a caller's
        and not (name == "authorization" and carried_key)
    ]
    headers.append(("x-request-id", request.state.request_id))
    client = (request.client.host, request.client.port) if request.client is not None else None
    headers.append(context_header(client, _mount(api_id)))
    return headers
