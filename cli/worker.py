"""`wasmgate worker`: run async jobs from the queue, without an HTTP server.

Same settings as `wasmgate serve` (WASMGATE_*): with WASMGATE_REDIS_URL it takes jobs from
Redis, else from the SQLite queue in the data dir it shares with the gateway. SIGTERM or
SIGINT stops it: running jobs are interrupted and given back to the queue.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

from gateway.settings import Settings


def register(subcommands: argparse._SubParsersAction) -> None:
    p = subcommands.add_parser("worker", help="run async jobs (Prefer: respond-async) from the queue, no HTTP")
    p.add_argument("--data-dir", type=Path, help="state directory (default ./.wasmgate, WASMGATE_DATA_DIR)")
    p.add_argument("--concurrency", type=int, help="jobs at once (default WASMGATE_JOB_WORKERS, at least 1)")
    p.set_defaults(run=_worker)


def _worker(args: argparse.Namespace) -> int:
    settings = Settings(**({"data_dir": args.data_dir} if args.data_dir else {}))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_run(settings, args.concurrency or max(1, settings.job_workers)))
    return 0


async def _run(settings: Settings, concurrency: int) -> None:
    from gateway.jobs.queues import open_queue
    from gateway.jobs.worker import JobWorker
    from gateway.services import open_deployments

    db, runtime, deployments = await asyncio.to_thread(open_deployments, settings)
    queue = await asyncio.to_thread(open_queue, settings)
    worker = JobWorker(queue, deployments, runtime, settings, concurrency)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    worker.start()
    print(f"wasmgate worker {worker.consumer}: running {concurrency} jobs at once from {queue.backend}", flush=True)
    try:
        await stop.wait()
    finally:
        await worker.stop()
        await queue.aclose()
        deployments.close()
        db.close()
        runtime.close()
