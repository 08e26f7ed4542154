"""Opening the job queue the settings ask for.

Redis when `WASMGATE_REDIS_URL` is set (workers on any host sharing it), else SQLite in the
data dir (workers are processes on this host sharing the data dir).
"""

from __future__ import annotations

from gateway.jobs.model import JobQueue
from gateway.jobs.redis_queue import RedisJobQueue
from gateway.jobs.sqlite_queue import SqliteJobQueue
from gateway.settings import Settings


def open_queue(settings: Settings) -> JobQueue:
    """The configured queue (blocking: call from a thread)."""
    lease, ttl, attempts = settings.job_lease_s, settings.job_result_ttl_s, settings.job_max_attempts
    if settings.redis_url:
        return RedisJobQueue.from_url(settings.redis_url, lease, ttl, attempts)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteJobQueue(settings.data_dir, lease, ttl, attempts)
