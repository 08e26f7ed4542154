"""The gateway application: `create_app(settings)` wires routes, errors and the lifespan.

Start: open the data dir (SQLite, bundle store), load every deployed API, start the worker
pool. Stop: let running calls and builds finish, close. `GET /healthz` says the process is
alive, `GET /readyz` that it has loaded, can reach its database and serves what the start-up
deploy it waits for made live (gateway.http.readiness); neither needs auth. `GET /metrics`:
gateway.http.metrics.
"""

from __future__ import annotations

import os
import threading
from contextlib import asynccontextmanager
from typing import AsyncIterator

import anyio
from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.types import Message

from gateway import errors
from gateway.errors import error_body, json_response
from gateway.http import accounts, control, dataplane, docs, jobs, logs, metrics, swagger
from gateway.http.apis_dir import serve_apis_dir
from gateway.http.dataplane_dispatch import DataPlaneDispatch
from gateway.http.example import deploy_example
from gateway.http.middleware import RequestIdMiddleware
from gateway.http.readiness import RECORD, StartGate, Task
from gateway.services import Services, running_jobs
from gateway.http.stopping import watch_signals
from gateway.settings import Settings, get_settings
from gateway.state.store_gc import Collector
from gateway.state.worker_sync import die_with_parent


def create_app(settings: Settings | None = None, after_start: Task | None = None) -> FastAPI:
    """The app; `after_start(services)`, if given, runs once in a background thread after start
    (in one worker process only, when there are several). `settings.apis_dir` adds serving that
    folder's APIs (gateway.http.apis_dir) as such a task, else `settings.example` the example
    deployment, which holds readiness until it is served (gateway.http.readiness)."""
    settings = settings or get_settings()
    if after_start is None and settings.apis_dir is not None:
        after_start = serve_apis_dir
    if after_start is None and settings.example:
        after_start = deploy_example

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = await anyio.to_thread.run_sync(Services.start, settings)
        watch_signals()
        gate = StartGate(after_start, settings.workers_dir / RECORD if svc.sync.local is not None else None)
        app.state.start_gate = gate
        app.state.services = svc
        leader = svc.sync.local is None or svc.sync.local.is_leader()
        if after_start is not None and leader:
            threading.Thread(target=gate.run, args=(after_start, svc), name="after-start", daemon=True).start()
        collector = Collector(svc.deployments, settings.gc_interval_s) if leader else None
        if collector is not None:
            collector.start()
        await _prepare_data_plane(app)
        try:
            async with running_jobs(svc):
                yield
        finally:
            if collector is not None:
                collector.stop()
            app.state.services = None
            await anyio.to_thread.run_sync(svc.stop)
            await svc.limiter.aclose()

    app = FastAPI(title="wasmgate", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.services = None
    errors.install(app)
    app.add_middleware(DataPlaneDispatch)
    app.add_middleware(RequestIdMiddleware)  # the outer one: every call has its request id

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz", include_in_schema=False)
    def readyz(request: Request) -> Response:
        svc: Services | None = request.app.state.services
        if svc is None or not svc.db.ping():
            return json_response(error_body("NOT_READY", "the gateway is starting or stopping"), 503)
        waiting = request.app.state.start_gate.waiting(svc.deployments.registry)
        if waiting is not None:
            message = "the gateway is deploying what it was asked to serve at start"
            return json_response(error_body("NOT_READY", message, {**waiting, "process": os.getpid()}), 503)
        return json_response(
            {"status": "ready", "apis": len(svc.deployments.registry), "process": os.getpid(), **svc.pool.stats()}
        )

    # The data plane first: FastAPI prepares a route the first time a request is matched
    # against it, so a route listed before /run/... costs the first call of every process
    # (18 control-plane routes: ~20 ms). Their paths do not overlap.
    app.include_router(dataplane.router)
    app.include_router(metrics.router)
    app.include_router(control.router)
    app.include_router(logs.router)
    app.include_router(accounts.router)
    app.include_router(docs.router)
    app.include_router(swagger.router)
    app.include_router(jobs.router)
    return app


async def _prepare_data_plane(app: FastAPI) -> None:
    """Send a call down each way the data plane is reached before the first caller's: FastAPI
    prepares an included router's routes the first time a request goes through them (an API's
    pages, `GET /run/{id}/docs`), which took the first call of every process 7-12 ms, and the
    direct path (gateway.http.dataplane_dispatch) runs its code once. No API is named `-`:
    each answers 404 before any key, limit, sandbox or log (and the answer goes nowhere)."""

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        pass

    for method, path in (("GET", "/run/-/docs"), ("POST", "/run/-/-")):
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "scheme": "http",
            "method": method, "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
            "headers": [(b"host", b"gateway")], "client": ("127.0.0.1", 0), "server": ("gateway", 80), "state": {},
        }
        await app(scope, receive, send)


def create_worker_app() -> FastAPI:
    """The app of one worker process of `wasmgate serve --workers N` (uvicorn's factory)."""
    die_with_parent()
    return create_app(get_settings())
