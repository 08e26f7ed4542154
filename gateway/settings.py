"""All configuration, in one object read from WASMGATE_* environment variables.

The server reads everything here; the remote command line reads `url` and `admin_token`.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from runtime import Limits


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WASMGATE_", extra="ignore")

    data_dir: Path = Path(".wasmgate")

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
    # Sandbox worker threads, how many requests may wait for one, and for how long.
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1)
    queue_size: int = 64
    queue_timeout_s: float = 1.0
    max_body_mb: int = 32
    # Raw request bodies larger than this go to the sandbox from a file, not from memory.
    spool_kb: int = 1024
    # Invocation log entries kept per API.
    log_retention: int = 1000

    # Command line client
    url: str = "http://127.0.0.1:8000"

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
    def requests_dir(self) -> Path:
        """Per-request upload directories (removed after each call)."""
        return self.data_dir / "requests"

    @property
    def sources_dir(self) -> Path:
        """Per-deploy source directories (removed after each build)."""
        return self.data_dir / "sources"

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
