"""What crosses the host boundary: the request a caller made and the response a guest gave.

Small values cross as WIT strings (runtime.wit_codec lowers and lifts them). A raw body in
memory crosses by value as latin-1 text; a spooled body (a Path) and uploaded files cross as
files linked into the instance's request directory, preopened read-only at /request; the
response body comes back as a WIT string, UTF-8 text as is and binary as latin-1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path


REQUEST_DIR_GUEST = "/request"
# The API's configured environment (variables and secrets) rides as this last header; the
# guest takes it off into os.environ before the author's code sees the request. Hosts drop
# every `x-wasmgate-*` header a caller sends.
ENV_HEADER = "x-wasmgate-env"
# How the caller reached the API, the header before that one: their address as the gateway
# saw it, and the path the gateway serves the API under. The guest takes it off too, and
# gives it to the app: ASGI `client` (SDK `Request.client`), and `app_root_path`, under which
# Starlette's `url_for` builds URLs.
CONTEXT_HEADER = "x-wasmgate-context"


def context_header(client: tuple[str, int] | None, mount: str) -> tuple[str, str]:
    """The header carrying the caller's address and the API's mount (`/run/{id}`) to the
    guest, as `<mount> <port> <host>` (`-` for no caller): split, not parsed as JSON, the
    header costs an SDK echo 13k fuel of its ~250k (most of it lifting one more header),
    where JSON cost 46k (a fresh instance's first `json.loads`)."""
    host, port = client if client is not None else ("-", 0)
    if " " in mount or " " in host or not mount.startswith("/"):
        raise ValueError(f"cannot carry mount {mount!r} and host {host!r}")
    return CONTEXT_HEADER, f"{mount} {int(port)} {host}"


@dataclass(frozen=True)
class Upload:
    """A file the caller uploaded, already on disk inside the request's upload directory."""

    field: str
    filename: str
    content_type: str
    path: Path
    size: int


@dataclass
class SandboxRequest:
    method: str
    path: str
    query: list[tuple[str, str]] = field(default_factory=list)
    headers: list[tuple[str, str]] = field(default_factory=list)
    form: list[tuple[str, str]] = field(default_factory=list)
    files: list[Upload] = field(default_factory=list)
    body: bytes | Path = b""
    upload_dir: Path | None = None

    def body_size(self) -> int:
        return self.body.stat().st_size if isinstance(self.body, Path) else len(self.body)

    def with_env(self, env: dict[str, str]) -> "SandboxRequest":
        """This request carrying `env` for the guest's os.environ (itself when `env` is empty)."""
        if not env:
            return self
        return replace(self, headers=[*self.headers, (ENV_HEADER, json.dumps(env))])


@dataclass
class SandboxResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str, default: str | None = None) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), default)
