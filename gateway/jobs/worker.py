"""`JobWorker`: takes jobs from a `JobQueue` and runs them, `concurrency` at a time.

Gateway processes run one (`WASMGATE_JOB_WORKERS` jobs at once; 0: none) and so does
`wasmgate worker`. Each job runs on the API's active version at the time it is taken, with
that version's async limits (`limits.async_timeout_ms`), on the worker's own threads (they
do not compete with synchronous calls for the gateway's pool). While a job runs, its lease
is renewed every third of `job_lease_s`; a cancel request, or losing the job to another
worker (this one stalled past its lease), interrupts the guest at once. On stop, running
guests are interrupted and their jobs given back to the queue, to run again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.errors import ApiError, from_sandbox, not_found
from gateway.jobs.model import CANCELLED, FAILED, SUCCEEDED, Claim, JobQueue, error_result, response_result, result_body
from gateway.responses import guest_response
from gateway.settings import Settings
from gateway.state.config import redact
from gateway.state.deployments import Deployments
from gateway.state.records import InvocationRow
from runtime import InvocationReport, Runtime, SandboxError

log = logging.getLogger("wasmgate.jobs")

CLAIM_WAIT_S = 1.0
# Why a running guest was interrupted.
CANCEL, LOST, SHUTDOWN = "cancel", "lost", "shutdown"


@dataclass
class _Running:
    cancel: threading.Event = field(default_factory=threading.Event)
    reason: str | None = None

    def stop(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self.cancel.set()


class JobWorker:
    def __init__(
        self, queue: JobQueue, deployments: Deployments, runtime: Runtime, settings: Settings, concurrency: int
    ) -> None:
        self.queue = queue
        self.deployments = deployments
        self.runtime = runtime
        self.settings = settings
        self.concurrency = max(1, concurrency)
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix="job")
        self._running: dict[tuple[str, int], _Running] = {}  # by (job id, attempt)
        self._tasks: set[asyncio.Task] = set()
        self._loop_task: asyncio.Task | None = None
        self._stopping = False

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._claim_loop())

    async def stop(self) -> None:
        """Stop taking jobs; interrupt the running ones and give them back to the queue."""
        self._stopping = True
        for running in self._running.values():
            running.stop(SHUTDOWN)
        if self._loop_task is not None:
            await self._loop_task  # returns within CLAIM_WAIT_S
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def _claim_loop(self) -> None:
        slots = asyncio.Semaphore(self.concurrency)
        while not self._stopping:
            await slots.acquire()
            if self._stopping:
                break
            try:
                claim = await self.queue.claim(self.consumer, CLAIM_WAIT_S)
            except Exception:
                log.exception("taking a job from the %s queue failed; retrying in 1 s", self.queue.backend)
                claim = None
                await asyncio.sleep(1)
            if claim is None:
                slots.release()
                continue
            task = asyncio.create_task(self._run(claim))
            self._tasks.add(task)
            task.add_done_callback(lambda done: (self._tasks.discard(done), slots.release()))

    async def _run(self, claim: Claim) -> None:
        running = self._running[claim.job_id, claim.attempt] = _Running()
        if self._stopping:
            running.stop(SHUTDOWN)
        try:
            state, result, entry = await self._execute(claim, running)
            if running.reason == SHUTDOWN:
                await self.queue.release(claim)
            elif running.reason == LOST or not await self.queue.finish(claim, state, result):
                log.warning("job %s: another worker took it over; this run's outcome is dropped", claim.job_id)
            elif entry is not None:  # written now, not batched: jobs are read from other processes
                await asyncio.to_thread(self.deployments.record, entry, None, True)
        except Exception:  # the job stays claimed until its lease runs out, then runs again
            log.exception("job %s: the worker failed", claim.job_id)
        finally:
            del self._running[claim.job_id, claim.attempt]

    async def _execute(
        self, claim: Claim, running: _Running
    ) -> tuple[str, dict[str, Any], InvocationRow | None]:
        """Run the job's request: its final state, stored result and invocation log entry."""
        await asyncio.to_thread(self.deployments.refresh, claim.api_id)  # the active version now
        deployment = self.deployments.registry.get(claim.api_id)
        if deployment is None:
            return FAILED, error_result(not_found(f"no API {claim.api_id}")), None
        if deployment.paused:
            paused = ApiError(503, "API_PAUSED", f"API {deployment.name} is paused by its owner", {"api_id": claim.api_id})
            return FAILED, error_result(paused), None
        workdir = Path(tempfile.mkdtemp(prefix="wasmgate-job-"))
        supervisor = asyncio.create_task(self._supervise(claim, running))
        report, detail = InvocationReport(), ""
        try:
            request = await self.queue.materialize(claim, workdir)
            limits = deployment.async_limits or deployment.limits
            loop = asyncio.get_running_loop()
            invocation = await loop.run_in_executor(
                self._executor, self.runtime.invoke, deployment.bundle, request.with_env(deployment.env), limits,
                running.cancel,
            )
            report = invocation.report
            state, result = SUCCEEDED, response_result(guest_response(invocation.response, f"/run/{claim.api_id}"), report)
        except SandboxError as error:
            report, detail = error.report, f"{error.message}\n{error.detail}".strip()
            cancelled = error.code == "SANDBOX_CANCELLED" and running.reason == CANCEL
            state, result = (CANCELLED if cancelled else FAILED), error_result(from_sandbox(error), report)
        finally:
            supervisor.cancel()
            await asyncio.to_thread(shutil.rmtree, workdir, True)
        meta = claim.meta
        entry = InvocationRow(
            api_id=claim.api_id,
            time=time.time(),
            request_id=meta["request_id"],
            version=deployment.version,
            method=meta["method"],
            path=meta["path"],
            route=deployment.route_for(meta["method"], meta["path"]),
            status=result["status"],
            outcome=result["outcome"],
            fuel_used=report.fuel_used,
            duration_ms=report.wall_ms,
            bytes_in=request.body_size() + sum(f.size for f in request.files),
            bytes_out=len(result_body(result)),
            stdout=redact(report.stdout, deployment.hidden),
            stderr=redact(report.stderr, deployment.hidden),
            logs_truncated=report.logs_truncated,
            error_detail=redact(detail, deployment.hidden),
        )
        return state, result, entry

    async def _supervise(self, claim: Claim, running: _Running) -> None:
        """Renew the lease while the job runs; interrupt it when cancelled or taken over."""
        cancelled = asyncio.create_task(self.queue.wait_cancel(claim))
        try:
            while True:
                done, _ = await asyncio.wait({cancelled}, timeout=self.settings.job_lease_s / 3)
                if done and cancelled.exception() is None:
                    running.stop(CANCEL)
                    return
                if done:
                    log.warning("job %s: watching for its cancel failed: %s", claim.job_id, cancelled.exception())
                    cancelled = asyncio.create_task(self.queue.wait_cancel(claim))
                try:
                    owned = await self.queue.renew(claim)
                except Exception as error:  # keep trying: the lease has two more thirds to go
                    log.warning("job %s: renewing its lease failed: %s", claim.job_id, error)
                    continue
                if not owned:
                    running.stop(LOST)
                    return
        finally:
            cancelled.cancel()
