"""The gateway's long-lived parts, built at start and closed at stop, and how routes reach them.

This is where the layers below the HTTP service (state, limits, jobs) are wired together:
the app's lifespan and `wasmgate worker` open them here.
"""

from __future__ import annotations

import logging
import shutil
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import AsyncIterator

import anyio
from starlette.requests import Request

from gateway.jobs.model import JobQueue
from gateway.jobs.queues import open_queue
from gateway.jobs.worker import JobWorker
from gateway.limits.inline import InlineCalls
from gateway.limits.pool import WorkerPool
from gateway.limits.ratelimit_redis import AsyncRateLimiter, create_limiter
from gateway.metrics import ProcessFigures
from gateway.settings import Settings
from gateway.state import auth
from gateway.state.accounts import Accounts, AdminToken
from gateway.state.database import Database
from gateway.state.deployments import Deployments
from gateway.state.host_sync import HostSync
from gateway.state.worker_sync import WorkerSync
from runtime import BundleStore, Runtime

log = logging.getLogger("wasmgate.gateway")


class BuildQueue:
    """How many builds this process runs or has waiting, for the deploy's progress: builds
    beyond `WASMGATE_BUILD_WORKERS` wait their turn on the build threads."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._count = 0
        self._lock = threading.Lock()

    def enter(self) -> int:
        """Count one more build; how many must finish before it starts."""
        with self._lock:
            ahead = max(0, self._count - self.workers + 1)
            self._count += 1
            return ahead

    def leave(self) -> None:
        with self._lock:
            self._count -= 1


@dataclass
class Services:
    settings: Settings
    db: Database
    runtime: Runtime
    deployments: Deployments
    pool: WorkerPool
    builds: ThreadPoolExecutor
    build_queue: BuildQueue
    limiter: AsyncRateLimiter
    accounts: Accounts
    sync: HostSync
    figures: ProcessFigures  # this process's figures, published on scrape (gateway.metrics)
    inline: InlineCalls  # which calls run on the event loop's thread (gateway.limits.inline)
    jobs: JobQueue | None = None  # opened by the app's lifespan (running_jobs)

    @classmethod
    def start(cls, settings: Settings) -> "Services":
        """Open the data dir (blocking: call from a thread) and load every deployed API.

        One of several worker processes (`settings.processes` > 1) leaves the data dir's
        preparation to the parent (`prepare_data_dir`) and registers with the others first.
        """
        many = settings.processes > 1
        if many:  # the parent prepared it: the token's digest is on disk, or configured
            admin_digest, _ = auth.admin_token_digest(_configured_token(settings), settings.admin_token_file)
        else:
            admin_digest = prepare_data_dir(settings)
        db, runtime, deployments = open_deployments(settings)
        figures = ProcessFigures()
        write_out = partial(_write_out, deployments, figures)
        local = WorkerSync(settings.workers_dir, deployments.refresh, write_out) if many else None
        deployments.load_all()
        log.info("serving %d APIs from %s", len(deployments.registry), settings.data_dir)
        sync = HostSync(deployments, settings.redis_url, settings.sync_interval_s, settings.stage_timeout_s, local)
        sync.start()
        svc = cls(
            settings=settings,
            db=db,
            runtime=runtime,
            deployments=deployments,
            pool=WorkerPool(settings.workers, settings.queue_size, settings.queue_timeout_s, settings.api_concurrency),
            builds=ThreadPoolExecutor(max(1, settings.build_workers), thread_name_prefix="build"),
            build_queue=BuildQueue(max(1, settings.build_workers)),
            limiter=create_limiter(
                settings.redis_url,
                on_error=settings.rate_limit_on_error,
                timeout_s=settings.rate_limit_timeout_ms / 1000,
                shared_path=settings.data_dir / "ratelimit.db" if many else None,
            ),
            accounts=Accounts(
                settings, db, AdminToken(admin_digest, None if settings.admin_token else settings.admin_token_file)
            ),
            sync=sync,
            figures=figures,
            inline=InlineCalls(settings.inline_budget_ms),
        )
        figures.read = svc.read_figures
        return svc

    def read_figures(self) -> dict[str, float]:
        """This process's figures by metric name (gateway.metrics.FIGURES), read from its parts."""
        limiter, calls = self.limiter, self.deployments.calls
        pool, instances, loaded = self.pool.stats(), self.runtime.pool.stats(), self.runtime.loaded()
        return {
            "wasmgate_apis_loaded": len(self.deployments.registry),
            "wasmgate_sandbox_calls_running": pool["running"],
            "wasmgate_sandbox_calls_waiting": pool["waiting"],
            "wasmgate_api_busy_total": self.pool.api_busy_total,
            "wasmgate_ratelimit_store_errors_total": getattr(limiter, "errors_total", 0),
            "wasmgate_ratelimit_fail_open_total": getattr(limiter, "fail_open_total", 0),
            "wasmgate_ratelimit_fail_closed_total": getattr(limiter, "fail_closed_total", 0),
            "wasmgate_sync_messages_total": self.sync.messages_total,
            "wasmgate_sync_refreshes_total": self.sync.refreshes_total,
            "wasmgate_sync_staged_total": self.sync.staged_total,
            "wasmgate_sync_stage_timeouts_total": self.sync.stage_timeouts_total,
            "wasmgate_instance_pool_hits_total": instances["hits"],
            "wasmgate_instance_pool_misses_total": instances["misses"],
            "wasmgate_instance_pool_handed_over_total": instances["handed_over"],
            "wasmgate_instance_pool_warmed_total": instances["warmed"],
            "wasmgate_instance_pool_ready": instances["ready"],
            "wasmgate_instance_pool_live": instances["live"],
            "wasmgate_components_loaded": loaded["components"],
            "wasmgate_components_loaded_bytes": loaded["bytes"],
            "wasmgate_components_unloaded_total": loaded["unloads"],
            "wasmgate_instance_pool_slots": instances["slots"],
            "wasmgate_call_log_written_total": calls.written_total,
            "wasmgate_call_log_dropped_total": calls.dropped_total,
        }

    def stop(self) -> None:
        """Let running calls and builds finish, then close (blocking: call from a thread)."""
        self.sync.stop()
        self.pool.shutdown()
        self.builds.shutdown(wait=True, cancel_futures=True)
        self.deployments.close()
        self.db.close()
        self.runtime.close()


def prepare_data_dir(settings: Settings) -> str:
    """Make the data dir ready (blocking), once per `serve`, before any worker process starts:
    scratch directories emptied, what builds and fetches killed mid-way left in the bundle
    store removed, the admin token's digest (generated and printed once on the very first
    start)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    for scratch in (settings.requests_dir, settings.sources_dir):
        shutil.rmtree(scratch, ignore_errors=True)  # leftovers of a crash
        scratch.mkdir()
    removed = BundleStore(settings.store_dir).remove_leftovers()  # only dead processes' leftovers
    if removed:
        log.warning("removed what an interrupted build or fetch left in the bundle store: %s", ", ".join(removed))
    admin_digest, generated = auth.admin_token_digest(_configured_token(settings), settings.admin_token_file)
    if generated:
        print(
            f"wasmgate: generated the admin token (shown only this once; its hash is in"
            f" {settings.admin_token_file}):\n\n    WASMGATE_ADMIN_TOKEN={generated}\n",
            file=sys.stdout,
            flush=True,
        )
    return admin_digest


def _write_out(deployments: Deployments, figures: ProcessFigures) -> None:
    """What another worker process asks of this one before reading logs, usage or metrics:
    write out the queued call log, publish this process's figures."""
    deployments.calls.flush()
    figures.publish()


def _configured_token(settings: Settings) -> str | None:
    return settings.admin_token.get_secret_value() if settings.admin_token else None


def open_deployments(settings: Settings) -> tuple[Database, Runtime, Deployments]:
    """The metadata database, the runtime and the deployments over them (blocking); also what
    a `wasmgate worker` process opens."""
    db = Database(settings.database_url or settings.db_path, settings.log_retention)
    store = BundleStore(settings.store_dir, settings.compiled_cache_mb << 20)
    runtime = Runtime(
        store,
        pool=settings.pool_budget(),
        concurrency=settings.workers + settings.job_workers,
        max_memory_bytes=settings.max_memory_mb << 20,
        resident_bytes=settings.pool_resident_mb << 20,
        loaded_bytes=settings.loaded_mb << 20,
    )
    return db, runtime, Deployments(settings, db, store, runtime)


def services(request: Request) -> Services:
    return request.app.state.services


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
