"""What the data plane serves: each API's active version, held in memory.

A `Deployment` is immutable. A request looks its API up once and keeps that object (and so
that bundle and those limits) to the end; a hot swap or rollback only replaces the entry in
the registry, so requests already running finish on the version they started with.
The registry tells its owner when a bundle becomes live (`on_live`) and when no API serves
it any more (`on_gone`), so that the runtime keeps instances ready only for live bundles.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable

from gateway.limits.ratelimit import RateLimit
from runtime import Bundle, Limits

_TEMPLATE_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::path)?\}")


@dataclass(frozen=True)
class Deployment:
    api_id: str
    name: str
    version: int
    bundle: Bundle
    limits: Limits
    rate_limit: RateLimit | None
    quota: dict[str, int] | None
    private: bool
    async_limits: Limits | None = None  # for async jobs (None: `limits`)
    paused: bool = False  # answers API_PAUSED without running
    public: bool = False  # callable without a key (rate limits then count per client IP)
    cors: dict | None = None  # gateway.state.specs.CorsSpec as a dict
    env: dict[str, str] = field(default_factory=dict)  # the guest's os.environ
    hidden: tuple[str, ...] = ()  # secret values, masked in what a call's log keeps
    owner: str | None = None  # the account managing it
    account_limit: RateLimit | None = None  # all calls of the owner's APIs together, per its plan
    account_daily: RateLimit | None = None  # the same over any rolling 24 hours

    @property
    def routes(self) -> list[dict]:
        return self.bundle.routes

    @property
    def openapi(self) -> dict | None:
        return self.bundle.openapi

    @cached_property
    def _patterns(self) -> list[tuple[str, re.Pattern[str], str]]:
        return [(r["method"], _compile(r["path"]), r["path"]) for r in self.routes]

    def route_for(self, method: str, path: str) -> str | None:
        """The route template `path` falls under (for logs and usage), if any."""
        method = "GET" if method == "HEAD" else method
        for route_method, pattern, template in self._patterns:
            if route_method == method and pattern.fullmatch(path):
                return template
        return None


def _compile(template: str) -> re.Pattern[str]:
    parts, last = [], 0
    for match in _TEMPLATE_PARAM.finditer(template):
        parts.append(re.escape(template[last : match.start()]))
        parts.append(".+" if match.group(0).endswith(":path}") else "[^/]+")
        last = match.end()
    parts.append(re.escape(template[last:]))
    return re.compile("".join(parts))


class Registry:
    def __init__(
        self,
        on_live: Callable[[Bundle], None] = lambda bundle: None,
        on_gone: Callable[[str], None] = lambda bundle_hash: None,
    ) -> None:
        self._apis: dict[str, Deployment] = {}
        self._users: dict[str, int] = {}  # bundle hash -> APIs serving it
        self._lock = threading.Lock()
        self._on_live, self._on_gone = on_live, on_gone

    def get(self, api_id: str) -> Deployment | None:
        return self._apis.get(api_id)

    def put(self, deployment: Deployment) -> None:
        """Make `deployment` the one new requests get (one dict store: atomic)."""
        self._on_live(deployment.bundle)
        with self._lock:
            old = self._apis.get(deployment.api_id)
            self._apis[deployment.api_id] = deployment
            self._count(deployment.bundle.hash, +1)
            gone = self._count(old.bundle.hash, -1) if old is not None else None
        if gone:
            self._on_gone(gone)

    def remove(self, api_id: str) -> None:
        with self._lock:
            old = self._apis.pop(api_id, None)
            gone = self._count(old.bundle.hash, -1) if old is not None else None
        if gone:
            self._on_gone(gone)

    def live_bundles(self) -> set[str]:
        """The bundles some API serves now."""
        with self._lock:
            return set(self._users)

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._apis)

    def __len__(self) -> int:
        return len(self._apis)

    def _count(self, bundle_hash: str, delta: int) -> str | None:
        """Adjust a bundle's user count; returns the hash once nobody serves it."""
        users = self._users.get(bundle_hash, 0) + delta
        if users > 0:
            self._users[bundle_hash] = users
            return None
        self._users.pop(bundle_hash, None)
        return bundle_hash
