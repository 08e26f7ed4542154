"""What an invocation reports about itself, whatever its outcome."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class InvocationReport:
    fuel_used: int = 0
    instantiate_ms: float = 0.0
    call_ms: float = 0.0
    wall_ms: float = 0.0
    stdout: str = ""
    stderr: str = ""
    logs_truncated: bool = False
    premade: bool = False  # the instance was made before the request arrived

    def as_dict(self) -> dict:
        return {
            "fuel_used": self.fuel_used,
            "instantiate_ms": round(self.instantiate_ms, 3),
            "call_ms": round(self.call_ms, 3),
            "wall_ms": round(self.wall_ms, 3),
            "stdout": self.stdout,
            "stderr": self.stderr,
            "logs_truncated": self.logs_truncated,
            "premade": self.premade,
        }
