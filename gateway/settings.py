"""All configuration, in one object read from WASMGATE_* environment variables.

The server reads everything here; the remote command line reads `url` and `admin_token`.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.limits.ratelimit import RateLimit
from runtime import Limits, PoolBudget


class Plan(BaseModel):
    """What an account's plan allows: APIs, and calls of all its APIs together (None: no cap)."""

    model_config = ConfigDict(extra="forbid")
    max_apis: int | None = Field(None, ge=0)
    requests: int | None = Field(None, ge=1)  # per `per_seconds`, all keys of all its APIs
    per_seconds: float = Field(60.0, gt=0)
    requests_per_day: int | None = Field(None, ge=1)  # over any rolling 24 hours


DEFAULT_PLANS = {
    "free": Plan(max_apis=5, requests=600, per_seconds=60, requests_per_day=100_000),
    "pro": Plan(max_apis=100, requests=6000, per_seconds=60),
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WASMGATE_", extra="ignore")

    data_dir: Path = Path(".wasmgate")
    # Metadata (APIs, versions, keys, usage, logs) and the bundles every host fetches: unset,
    # SQLite in the data dir (one host); `postgresql://user:pass@host/db` to share between hosts.
    database_url: str | None = None

    # Defaults for an API that asks for nothing, and server-wide caps on what it may ask.
    default_memory_mb: int = 128
    default_fuel: int = 2_000_000_000
    default_timeout_ms: int = 2_000
    max_memory_mb: int = 512
    max_fuel: int = 50_000_000_000
    max_timeout_ms: int = 30_000
    max_response_mb: int = 16
    max_log_kb: int = 64

    # Builds
    max_source_mb: int = 10
    wheelhouse: Path | None = None
    index_url: str | None = None
    build_workers: int = Field(default_factory=lambda: max(1, (os.cpu_count() or 2) // 2))

    # Serving
    host: str = "127.0.0.1"
    port: int = 8000
    # Unset: generated on first start, printed once, and only its sha256 kept in the data dir.
    admin_token: SecretStr | None = None
    # Set: `GET /metrics` asks for it as `Authorization: Bearer <token>`; unset, it is open.
    metrics_token: SecretStr | None = None
    # Gateway processes serving one port (`wasmgate serve --workers N` sets it for its workers;
    # they then share rate limits, changes and logs through the data dir).
    processes: int = Field(default=1, ge=1, le=256)
    # Deploy the README's example API at start (`wasmgate serve --example`).
    example: bool = False
    # Serve every API in this folder and follow its changes (`wasmgate serve --apis-dir`, `wasmgate dev`).
    apis_dir: Path | None = None
    # uvicorn's line per request on stderr. Off by default: every call of an API is in its
    # invocation log (`GET /v1/apis/{id}/logs`), and the line cost ~0.2 ms of the event loop's time.
    access_log: bool = False
    # Sandbox worker threads per process, how many requests may wait for one, and for how long.
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1)
    queue_size: int = 64
    queue_timeout_s: float = 1.0
    # Calls of one API running at once per process (default: workers - 1, at least 1), so that
    # no API, however slow or hostile, holds every worker; beyond it: 503 API_BUSY.
    api_concurrency: int | None = Field(default=None, ge=1)
    # A call may run on the event loop's own thread, saving two thread hops, when nothing else
    # is in flight in the process and its API's recent calls were short; it is stopped at this
    # budget (checked every 10 ms) and run again on a worker (gateway.limits.inline). 0: never;
    # at most 30, so that no inline call lives to be made a long one (runtime.priority, 50 ms).
    inline_budget_ms: int = Field(default=10, ge=0, le=30)
    max_body_mb: int = 32
    # Pre-made instances (never used, made before their request): at most `pool_ready` in all,
    # `pool_depth` per API version, kept only for versions called within `pool_hot_s`; made by
    # `pool_fillers` background threads at low CPU priority (one could not keep up even with one
    # connection: ~73% of calls found an instance ready, with two ~99%). 0 ready: every call
    # makes its own.
    pool_ready: int = Field(default=8, ge=0, le=1000)
    pool_depth: int = Field(default=4, ge=0, le=1000)
    pool_hot_s: float = Field(default=60.0, ge=0)
    pool_fillers: int = Field(default=2, ge=0, le=64)
    # A version that missed the pool this recently is throughput-bound: no warm-up for it.
    pool_busy_s: float = Field(default=1.0, ge=0)
    # Linear memory each instance slot keeps resident between instances: a new instance
    # faults in whatever of its memory lies beyond it (an SDK app's ~15 MiB image fits in 16;
    # a FastAPI app's 20-30 MiB needs 32), and every used slot holds up to this much of what
    # its instances touched (a memory bomb's slot: all of it).
    pool_resident_mb: int = Field(default=32, ge=0, le=4096)
    # Loaded components a process keeps (each charged its precompiled file's size and its
    # component's, ~35 MB for an SDK app, about what one loaded and called maps): past it the least recently called API's is dropped and its memory returned;
    # its next call loads it again from the page cache (~3 ms more than a loaded one's).
    loaded_mb: int = Field(default=512, ge=0)
    # Disk for the precompiled files of APIs built on a base (~21 MB each for an SDK app):
    # past it the least recently loaded ones are removed after each deploy and collection,
    # and restored from their deltas (~0.3 MB each) when next loaded (~60 ms, where a kept
    # one loads in ~3 ms); 0 keeps every one. See the README's "Many APIs on one node".
    compiled_cache_mb: int = Field(default=4096, ge=0)
    # Raw request bodies larger than this go to the sandbox from a file, not from memory.
    spool_kb: int = 1024
    # The bundle store's garbage collection (gateway.state.store_gc): versions kept per API
    # (older ones are forgotten, the active one never), how often it runs, and how long a
    # bundle just built or reused is spared before a version names it.
    version_retention: int = Field(default=20, ge=1)
    gc_interval_s: float = Field(default=3600.0, gt=0)
    gc_grace_s: float = Field(default=3600.0, ge=0)
    # Invocation log entries kept per API.
    log_retention: int = 1000

    # Rate limits: the plan for APIs that set none (per key), and where limits are kept.
    # With a Redis URL every gateway process shares them; without, they live in this process.
    rate_limit_requests: int = 6000
    rate_limit_per_seconds: float = 60.0
    rate_limit_burst: int | None = None
    redis_url: str | None = None
    # When Redis fails: "open" serves without limits, "closed" refuses with 429.
    rate_limit_on_error: Literal["open", "closed"] = "open"
    rate_limit_timeout_ms: int = 100
    # Hosts re-read all APIs and keys this often (changes normally arrive at once via Redis).
    sync_interval_s: float = 5.0
    # Before a new version goes live, the deploying host waits at most this long for the other
    # hosts to fetch and load its bundle (then the switch reaches every host at once).
    stage_timeout_s: float = 10.0

    # Async jobs (`Prefer: respond-async`): queued in Redis with redis_url, else in data_dir/jobs.db.
    # Jobs this process runs at once (0: only `wasmgate worker` processes run them).
    job_workers: int = 1
    # A running job whose worker stops renewing it for this long is taken over (run again).
    job_lease_s: float = 30.0
    # After this many starts without a finish the job fails with JOB_ABANDONED.
    job_max_attempts: int = 3
    # A finished job's record and response are kept this long.
    job_result_ttl_s: float = 86_400.0
    # Cap on what an API may ask as limits.async_timeout_ms (its default: its timeout_ms).
    max_async_timeout_ms: int = 300_000
    # Body cap for async requests (in Redis mode the body and uploads are kept in Redis).
    max_async_body_mb: int | None = None  # unset: max_body_mb

    # Author accounts (`POST /v1/accounts`): each on a named plan capping its APIs and the
    # calls of all of them together, on top of each API's own limits. JSON, e.g.
    # WASMGATE_PLANS='{"free": {"max_apis": 3, "requests": 60, "per_seconds": 60}}'.
    plans: dict[str, Plan] = Field(default_factory=lambda: dict(DEFAULT_PLANS))
    default_plan: str = "free"
    # Encrypts APIs' secrets at rest (any string; hosts sharing a database need the same one).
    # Unset: generated on first use into data_dir/secret-key (mode 0600).
    secret_key: SecretStr | None = None

    # Command line client: the gateway, and the token its commands send (an account's token;
    # unset: the admin token).
    url: str = "http://127.0.0.1:8000"
    token: SecretStr | None = None

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "store"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "wasmgate.db"

    @property
    def admin_token_file(self) -> Path:
        return self.data_dir / "admin-token.sha256"

    @property
    def secret_key_file(self) -> Path:
        return self.data_dir / "secret-key"

    @property
    def requests_dir(self) -> Path:
        """Per-request upload directories (removed after each call)."""
        return self.data_dir / "requests"

    @property
    def workers_dir(self) -> Path:
        """How the worker processes of one `serve` tell each other of changes (gateway.state.worker_sync)."""
        return self.data_dir / "workers"

    @property
    def build_slots_dir(self) -> Path:
        """One lock file per build slot of this host (gateway.state.build_slots)."""
        return self.data_dir / "build-slots"

    @property
    def sources_dir(self) -> Path:
        """Per-deploy source directories (removed after each build)."""
        return self.data_dir / "sources"

    def pool_budget(self) -> PoolBudget:
        return PoolBudget(self.pool_ready, self.pool_depth, self.pool_hot_s, self.pool_fillers, self.pool_busy_s)

    def default_rate_limit(self) -> RateLimit:
        return RateLimit(self.rate_limit_requests, self.rate_limit_per_seconds, self.rate_limit_burst)

    def default_limits(self) -> Limits:
        return Limits.from_mb(
            memory_mb=self.default_memory_mb,
            fuel=self.default_fuel,
            timeout_ms=self.default_timeout_ms,
            max_response_bytes=self.max_response_mb << 20,
            max_log_bytes=self.max_log_kb << 10,
        )


@lru_cache
def get_settings() -> Settings:
    return Settings()
