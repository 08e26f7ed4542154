"""Per-invocation resource limits and their defaults."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1 << 20
# wasmtime cannot instantiate the CPython component with less linear memory than this.
MIN_MEMORY_BYTES = 16 * MIB


@dataclass(frozen=True)
class Limits:
    """What one invocation may use before it is stopped.

    fuel: wasm instructions, roughly (a tight Python loop burns about 1e10 fuel/s here).
    timeout_ms: wall-clock deadline, sleeping included.
    """

    memory_bytes: int = 128 * MIB
    fuel: int = 2_000_000_000
    timeout_ms: int = 2_000
    max_response_bytes: int = 16 * MIB
    max_log_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        if self.memory_bytes < MIN_MEMORY_BYTES:
            raise ValueError(f"memory limit must be at least {MIN_MEMORY_BYTES // MIB} MiB")
        for name in ("fuel", "timeout_ms", "max_response_bytes", "max_log_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")

    @classmethod
    def from_mb(cls, memory_mb: int | None = None, **overrides: int) -> "Limits":
        values = {k: v for k, v in overrides.items() if v is not None}
        if memory_mb is not None:
            values["memory_bytes"] = memory_mb * MIB
        return cls(**values)

    def as_dict(self) -> dict[str, int]:
        return {
            "memory_mb": self.memory_bytes // MIB,
            "fuel": self.fuel,
            "timeout_ms": self.timeout_ms,
            "max_response_bytes": self.max_response_bytes,
            "max_log_bytes": self.max_log_bytes,
        }
