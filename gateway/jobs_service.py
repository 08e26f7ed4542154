"""Opening the job queue the settings ask for, and running the gateway's own job worker.

Redis when `WASMGATE_REDIS_URL` is set (workers on any host sharing it), else SQLite in the
data dir (workers are processes on this host sharing the data dir).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

import anyio

from gateway.jobs_model import JobQueue
from gateway.jobs_redis import RedisJobQueue
from gateway.jobs_sqlite import SqliteJobQueue
from gateway.jobs_worker import JobWorker
from gateway.services import Services
from gateway.settings import Settings


def open_queue(settings: Settings) -> JobQueue:
    """The configured queue (blocking: call from a thread)."""
    lease, ttl, attempts = settings.job_lease_s, settings.job_result_ttl_s, settings.job_max_attempts
    if settings.redis_url:
        return RedisJobQueue.from_url(settings.redis_url, lease, ttl, attempts)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteJobQueue(settings.data_dir, lease, ttl, attempts)


@asynccontextmanager
async def running_jobs(svc: Services) -> AsyncIterator[None]:
    """Open `svc.jobs`, and run `WASMGATE_JOB_WORKERS` jobs at once in this process (if > 0)."""
    svc.jobs = await anyio.to_thread.run_sync(open_queue, svc.settings)
    worker = None
    if svc.settings.job_workers > 0:
        worker = JobWorker(svc.jobs, svc.deployments, svc.runtime, svc.settings, svc.settings.job_workers)
        worker.start()
    try:
        yield
    finally:
        if worker is not None:
            await worker.stop()
        await svc.jobs.aclose()
