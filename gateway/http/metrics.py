"""`GET /metrics`: the gateway's metrics (gateway.metrics) in the Prometheus text format.

With WASMGATE_METRICS_TOKEN set the scraper sends it as `Authorization: Bearer <token>`
(401 without it, 403 with another); unset, the endpoint is open. A scrape first publishes the
figures of this process and, with several worker processes, of every other one (they answer
through the data dir within milliseconds), and the job queue's depth (a queue that cannot
be read, Redis down say, leaves the last depth: the scrape still answers); then it reads the
metrics of every process (multiprocess mode) or of this one.
"""

from __future__ import annotations

import logging

import anyio
from fastapi import APIRouter, Request
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.responses import Response

from gateway import metrics
from gateway.errors import ApiError, error_body, json_response
from gateway.jobs.model import JobQueue
from gateway.services import Services
from gateway.state import auth

log = logging.getLogger("wasmgate.gateway")

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def scrape(request: Request) -> Response:
    svc: Services | None = request.app.state.services
    if svc is None:
        return json_response(error_body("NOT_READY", "the gateway is starting or stopping"), 503)
    _check_token(request, svc)
    await anyio.to_thread.run_sync(_publish_processes, svc)
    if svc.jobs is not None:
        await _publish_job_depth(svc.jobs)
    return Response(await anyio.to_thread.run_sync(_exposition), media_type=CONTENT_TYPE_LATEST)


def _check_token(request: Request, svc: Services) -> None:
    expected = svc.settings.metrics_token
    if expected is None:
        return
    presented = auth.bearer_token(request.headers)
    if presented is None:
        raise ApiError(
            401, "AUTH_MISSING", "send the metrics token as `Authorization: Bearer <token>`",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not auth.matches(auth.digest(expected.get_secret_value()), presented):
        raise ApiError(403, "AUTH_INVALID", "the metrics token is not valid")


async def _publish_job_depth(jobs: JobQueue) -> None:
    try:
        depth = await jobs.depth()
    except Exception as error:  # the backend's own errors (Redis, SQLite): the other metrics matter most then
        log.warning("metrics: the job queue's depth could not be read: %s", error)
        return
    for state, count in depth.items():
        metrics.JOBS.labels(state).set(count)


def _publish_processes(svc: Services) -> None:
    """This process's figures, and every other worker's (no-op with one process)."""
    svc.figures.publish()
    svc.deployments.flush_others()


def _exposition() -> bytes:
    if not metrics.multiprocess():
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return generate_latest(registry)
