"""All configuration, in one object read from WASMGATE_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

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

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "store"

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
