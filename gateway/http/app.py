"""The gateway application: `create_app(settings)` wires routes, errors and the lifespan.

Start: open the data dir (SQLite, bundle store), load every deployed API, start the worker
pool. Stop: let running calls and builds finish, close. `GET /healthz` says the process is
alive, `GET /readyz` that it has loaded and can reach its database; neither needs auth.
"""

from __future__ import annotations

import logging
import os
import threading
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable

import anyio
from fastapi import FastAPI, Request
from starlette.responses import Response

from gateway import errors
from gateway.errors import error_body, json_response
from gateway.http import control, dataplane, jobs
from gateway.http.example import deploy_example
from gateway.http.middleware import RequestIdMiddleware
from gateway.services import Services, running_jobs
from gateway.settings import Settings, get_settings
from gateway.state.worker_sync import die_with_parent

log = logging.getLogger("wasmgate.gateway")


def create_app(settings: Settings | None = None, after_start: Callable[[Services], None] | None = None) -> FastAPI:
    """The app; `after_start(services)`, if given, runs once in a background thread after start
    (in one worker process only, when there are several). `settings.example` adds the example
    deployment as such a task."""
    settings = settings or get_settings()
    if after_start is None and settings.example:
        after_start = deploy_example

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = await anyio.to_thread.run_sync(Services.start, settings)
        app.state.services = svc
        if after_start is not None and (svc.sync.local is None or svc.sync.local.is_leader()):
            threading.Thread(target=_guarded, args=(after_start, svc), name="after-start", daemon=True).start()
        try:
            async with running_jobs(svc):
                yield
        finally:
            app.state.services = None
            await anyio.to_thread.run_sync(svc.stop)
            await svc.limiter.aclose()

    app = FastAPI(title="wasmgate", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.services = None
    errors.install(app)
    app.add_middleware(RequestIdMiddleware)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz", include_in_schema=False)
    def readyz(request: Request) -> Response:
        svc: Services | None = request.app.state.services
        if svc is None or not svc.db.ping():
            return json_response(error_body("NOT_READY", "the gateway is starting or stopping"), 503)
        return json_response(
            {"status": "ready", "apis": len(svc.deployments.registry), "process": os.getpid(), **svc.pool.stats()}
        )

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        """Counters for operators, in the Prometheus text format."""
        svc: Services | None = request.app.state.services
        if svc is None:
            return json_response(error_body("NOT_READY", "the gateway is starting or stopping"), 503)
        return Response(prometheus_text(svc), media_type="text/plain; version=0.0.4")

    app.include_router(control.router)
    app.include_router(dataplane.router)
    app.include_router(jobs.router)
    return app


def create_worker_app() -> FastAPI:
    """The app of one worker process of `wasmgate serve --workers N` (uvicorn's factory)."""
    die_with_parent()
    return create_app(get_settings())


def prometheus_text(svc: Services) -> str:
    limiter = svc.limiter
    pool = svc.runtime.pool.stats()
    values = {
        "wasmgate_apis_loaded": len(svc.deployments.registry),
        "wasmgate_sandbox_calls_running": svc.pool.stats()["running"],
        "wasmgate_sandbox_calls_waiting": svc.pool.stats()["waiting"],
        # Calls shed because their API already ran its share of the workers (API_BUSY).
        "wasmgate_api_busy_total": svc.pool.api_busy_total,
        "wasmgate_ratelimit_store_errors_total": getattr(limiter, "errors_total", 0),
        "wasmgate_ratelimit_fail_open_total": getattr(limiter, "fail_open_total", 0),
        "wasmgate_ratelimit_fail_closed_total": getattr(limiter, "fail_closed_total", 0),
        "wasmgate_sync_messages_total": svc.sync.messages_total,
        "wasmgate_sync_refreshes_total": svc.sync.refreshes_total,
        "wasmgate_sync_staged_total": svc.sync.staged_total,
        "wasmgate_sync_stage_timeouts_total": svc.sync.stage_timeouts_total,
        # Pre-made instances: a hit took a ready one, a miss made its own on the request path.
        "wasmgate_instance_pool_hits_total": pool["hits"],
        "wasmgate_instance_pool_misses_total": pool["misses"],
        # Hits that waited for the instance a filler was making (counted in hits too).
        "wasmgate_instance_pool_handed_over_total": pool["handed_over"],
        "wasmgate_instance_pool_warmed_total": pool["warmed"],
        "wasmgate_instance_pool_ready": pool["ready"],
        "wasmgate_instance_pool_live": pool["live"],
        "wasmgate_instance_pool_slots": pool["slots"],
        # The call log written behind requests (gateway.state.call_log).
        "wasmgate_call_log_written_total": svc.deployments.calls.written_total,
        "wasmgate_call_log_dropped_total": svc.deployments.calls.dropped_total,
    }
    return "".join(f"{name} {value}\n" for name, value in values.items())


def _guarded(task: Callable[[Services], None], svc: Services) -> None:
    try:
        task(svc)
    except Exception:
        log.exception("the after-start task failed")
