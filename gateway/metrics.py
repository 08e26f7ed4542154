"""The gateway's Prometheus metrics: every definition, and how a process publishes its figures.

Three kinds of numbers:

- Events counted where they happen (calls of the data plane by API, status and outcome, their
  latency and fuel, rate-limit decisions, quota rejections, builds): prometheus_client
  counters and histograms, a label lookup and an `inc`/`observe` each, no I/O.
- Figures the process's parts keep themselves (the sandbox worker pool, the pre-made
  instance pool, the rate limiter's store errors, host sync, the call log), which know
  nothing of Prometheus: `ProcessFigures.publish` copies them into the gauges and counters of
  FIGURES when a scrape asks (a counter advances by what its source advanced since the last
  publish).
- The job queue's depth, the same for every process (the queue is shared): the scraping
  process reads it and sets `JOBS`.

Several processes (`wasmgate serve --workers N`) share one port and a scrape reaches one of
them, so every number is kept in prometheus_client's multiprocess mode. The parent sets
PROMETHEUS_MULTIPROC_DIR to a fresh directory under the data dir (`prepare_multiprocess`,
before the workers start: prometheus_client picks its storage when first imported) and marks
a worker dead when it exits; each worker writes its values to memory-mapped files of its own
there, and a scrape reads them all (`MultiProcessCollector`). A collector that read the
parts at scrape time would see only the answering process, hence the copies: the scrape
first asks every other worker to publish its figures, through the change-log round trip that
also has them write out their call logs (gateway.state.worker_sync, milliseconds). Counters
add up every process that ran in this `serve`; gauges sum the live ones, or take the least
(APIs loaded) or the most recent value (job depth), as each says. With one process the
default registry is served as it is.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import Callable

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

disable_created_metrics()  # no `_created` series: the multiprocess mode has none either

# -- calls of the data plane (`/run/{id}/...`): every one the invocation log records ----------

REQUESTS = Counter(
    "wasmgate_requests_total",
    "Calls of an API, by its answer's status and the outcome its log records (OK, RATE_LIMITED, SANDBOX_TIMEOUT...)",
    ["api", "status", "outcome"],
)
LATENCY = Histogram(
    "wasmgate_request_duration_seconds",
    "Time from a call's arrival in the data plane to its answer",
    ["api"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
FUEL = Histogram(
    "wasmgate_request_fuel_used",
    "Fuel a call burned in its sandbox (calls that ran in one)",
    ["api"],
    buckets=(1e5, 3e5, 1e6, 3e6, 1e7, 3e7, 1e8, 3e8, 1e9, 3e9, 1e10, 5e10),
)
_RATE_LIMIT = Counter("wasmgate_ratelimit_decisions_total", "Rate-limit decisions on calls", ["decision"])
RATE_LIMIT_ALLOWED = _RATE_LIMIT.labels("allowed")
RATE_LIMIT_LIMITED = _RATE_LIMIT.labels("limited")
QUOTA_REJECTIONS = Counter(
    "wasmgate_quota_rejections_total", "Calls refused because their key used up a quota", ["quota"]
)
_INLINE = Counter(
    "wasmgate_inline_calls_total",
    "Calls run on the event loop's own thread (gateway.limits.inline): ran there, or moved to the worker pool at the budget",
    ["outcome"],
)
INLINE_RAN = _INLINE.labels("ran")
INLINE_MOVED = _INLINE.labels("moved")

# -- builds (deploys and new versions) ----------------------------------------------------------

BUILDS = Counter("wasmgate_builds_total", "Builds, by result: built, cached (already in the store), failed", ["result"])
BUILD_SECONDS = Histogram(
    "wasmgate_build_duration_seconds",
    "Time a build took, by result",
    ["result"],
    buckets=(0.1, 0.5, 1, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300),
)

# -- the job queue (shared by every process: read by the scraping one) ------------------------

JOBS = Gauge("wasmgate_jobs", "Async jobs not finished, by state", ["state"], multiprocess_mode="livemostrecent")

# -- figures of each process's parts (published on scrape) ------------------------------------

def _gauge(name: str, documentation: str, mode: str) -> tuple[str, Gauge]:
    return name, Gauge(name, documentation, multiprocess_mode=mode)


def _counter(name: str, documentation: str) -> tuple[str, Counter]:
    return name, Counter(name, documentation)


FIGURES: dict[str, Counter | Gauge] = dict(
    (
        _gauge("wasmgate_apis_loaded", "APIs served (the least over live processes)", "livemin"),
        _gauge("wasmgate_sandbox_calls_running", "Sandbox calls running", "livesum"),
        _gauge("wasmgate_sandbox_calls_waiting", "Sandbox calls waiting for a worker thread", "livesum"),
        _counter("wasmgate_api_busy_total", "Calls shed because their API ran its share of the workers (API_BUSY)"),
        _counter("wasmgate_ratelimit_store_errors_total", "Rate-limit decisions the store (Redis) failed to make"),
        _counter("wasmgate_ratelimit_fail_open_total", "Calls let through while the rate-limit store failed"),
        _counter("wasmgate_ratelimit_fail_closed_total", "Calls refused while the rate-limit store failed"),
        _counter("wasmgate_sync_messages_total", "Change messages received from other hosts"),
        _counter("wasmgate_sync_refreshes_total", "Full re-reads of every API and key"),
        _counter("wasmgate_sync_staged_total", "Other hosts' new bundles fetched and loaded before their switch"),
        _counter("wasmgate_sync_stage_timeouts_total", "Deploys that went live before every host had staged them"),
        _counter("wasmgate_instance_pool_hits_total", "Calls that took a pre-made instance"),
        _counter("wasmgate_instance_pool_misses_total", "Calls that made their own instance on the request path"),
        _counter("wasmgate_instance_pool_handed_over_total", "Hits that waited for the instance a filler was making"),
        _counter("wasmgate_instance_pool_warmed_total", "Pre-made instances warmed up"),
        _gauge("wasmgate_instance_pool_ready", "Pre-made instances ready", "livesum"),
        _gauge("wasmgate_instance_pool_live", "Instances existing (ready, running, closing)", "livesum"),
        _gauge("wasmgate_instance_pool_slots", "Instance slots of the engine", "livesum"),
        _gauge("wasmgate_components_loaded", "API versions whose component is loaded", "livesum"),
        _gauge("wasmgate_components_loaded_bytes", "Bytes of loaded components charged to WASMGATE_LOADED_MB", "livesum"),
        _counter("wasmgate_components_unloaded_total", "Components dropped to stay within WASMGATE_LOADED_MB"),
        _counter("wasmgate_call_log_written_total", "Call log entries written"),
        _counter("wasmgate_call_log_dropped_total", "Call log entries dropped (the queue was full)"),
    )
)


def observe_call(api_id: str, status: int, outcome: str, seconds: float, fuel_used: int | None) -> None:
    """One call of the data plane answered (`fuel_used` None: it ran in no sandbox)."""
    REQUESTS.labels(api_id, str(status), outcome).inc()
    LATENCY.labels(api_id).observe(seconds)
    if fuel_used is not None:
        FUEL.labels(api_id).observe(fuel_used)


def observe_build(result: str, seconds: float) -> None:
    BUILDS.labels(result).inc()
    BUILD_SECONDS.labels(result).observe(seconds)


class ProcessFigures:
    """This process's figures, mirrored into FIGURES by `publish`. `read` returns them by
    metric name (gateway.services sets it once the parts exist)."""

    def __init__(self) -> None:
        self.read: Callable[[], dict[str, float]] = dict
        self._published: dict[str, float] = {}
        self._lock = threading.Lock()  # a scrape and another worker's request may publish at once

    def publish(self) -> None:
        with self._lock:
            for name, value in self.read().items():
                metric = FIGURES[name]
                if isinstance(metric, Counter):
                    metric.inc(value - self._published.get(name, 0))
                else:
                    metric.set(value)
                self._published[name] = value


def multiprocess() -> bool:
    """Whether values go to PROMETHEUS_MULTIPROC_DIR (decided when prometheus_client was imported)."""
    return bool(os.environ.get(MULTIPROC_ENV))


def prepare_multiprocess(directory: Path) -> None:
    """Empty `directory` and have the worker processes started from now on keep their values
    there (call in the parent before it starts them)."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(directory)
