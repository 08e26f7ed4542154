"""Deploying APIs: create, update (hot swap), rollback, delete, keys, and what they report.

Every method is blocking (builds take tens of seconds, the database is synchronous): the
control plane calls them from worker threads. A change is committed to the database first
and then published to the in-memory `Registry`/`KeyRing`, both under one lock, so the two
never disagree and a change that was answered survives a crash.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field

from builder.build import build
from builder.errors import BuildError
from gateway import auth, quota
from gateway.call_log import CallLog
from gateway.db import ApiRow, Database, InvocationRow, KeyRow, NameTaken, VersionRow
from gateway.errors import ApiError, from_build, not_found, validation_error
from gateway.ratelimit import RateLimit
from gateway.registry import Deployment, Registry
from gateway.settings import Settings
from runtime import Bundle, BundleNotFound, BundleStore, Limits, Runtime, bundle_archive

log = logging.getLogger("wasmgate.gateway")

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
# Limits an API may ask for, with the settings that cap them.
_CAPS = {
    "memory_mb": "max_memory_mb",
    "fuel": "max_fuel",
    "timeout_ms": "max_timeout_ms",
    "async_timeout_ms": "max_async_timeout_ms",  # for async jobs; unset: timeout_ms
}
_DEFAULTS = {"memory_mb": "default_memory_mb", "fuel": "default_fuel", "timeout_ms": "default_timeout_ms"}


class LimitsSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    memory_mb: int | None = Field(None, ge=16)
    fuel: int | None = Field(None, ge=1)
    timeout_ms: int | None = Field(None, ge=1)
    async_timeout_ms: int | None = Field(None, ge=1)


class RateLimitSpec(BaseModel):
    """Per key: `requests` per `per_seconds`, bursts up to `burst` (default `requests`);
    `api_requests`, if set, caps all keys of the API together over the same window."""

    model_config = ConfigDict(extra="forbid")
    requests: int = Field(ge=1)
    per_seconds: float = Field(gt=0)
    burst: int | None = Field(None, ge=1)
    api_requests: int | None = Field(None, ge=1)


class QuotaSpec(BaseModel):
    """Per key, per UTC day and month (see gateway.quota)."""

    model_config = ConfigDict(extra="forbid")
    requests_per_day: int | None = Field(None, ge=1)
    fuel_per_day: int | None = Field(None, ge=1)
    requests_per_month: int | None = Field(None, ge=1)
    fuel_per_month: int | None = Field(None, ge=1)


class ApiSpec(BaseModel):
    """What a create or update asks for, besides the source itself."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, pattern=NAME_PATTERN)
    requirements: list[str] | None = None
    limits: LimitsSpec | None = None
    rate_limit: RateLimitSpec | None = None
    quota: QuotaSpec | None = None
    private: bool | None = None


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Deployments:
    def __init__(self, settings: Settings, db: Database, store: BundleStore, runtime: Runtime) -> None:
        self.settings = settings
        self.db = db
        self.store = store
        self.runtime = runtime
        self.registry = Registry(on_live=runtime.serve, on_gone=runtime.drain)
        self.calls = CallLog(db)
        self.keys = auth.KeyRing()
        self._publish = threading.Lock()
        # Told after every change this host commits (gateway.sync tells the other hosts).
        self.on_change: Callable[[str], None] = lambda api_id: None
        # Told of a bundle before a version using it goes live: returns once the other hosts
        # have it (gateway.sync), so that the switch reaches them at once.
        self.on_stage: Callable[[str, Callable[[str], None]], None] = lambda bundle_hash, progress: None
        # Asks the other worker processes of this `serve`, if any, to write out their call logs.
        self.flush_others: Callable[[], None] = lambda: None

    def load_all(self) -> None:
        """Publish every API's active version and every valid key (at start)."""
        self.refresh_all()

    def refresh_all(self) -> None:
        """Bring this host's view in line with the database: what other hosts changed, or
        everything at start. Versions already served stay as they are."""
        apis = self.db.list_apis()
        for api in apis:
            self._refresh_api(api)
        for gone in set(self.registry.ids()) - {api.id for api in apis}:
            self.registry.remove(gone)
        self.keys.replace_all([(k.id, k.api_id, k.digest) for k in self.db.keys()])

    def stage(self, bundle_hash: str) -> None:
        """Have `bundle_hash` installed and loaded here before another host switches to it."""
        self.runtime.load(self._local_bundle(bundle_hash))

    def refresh(self, api_id: str) -> None:
        """Re-read one API and its keys (another host changed them)."""
        api = self.db.get_api(api_id)
        if api is None:
            self.registry.remove(api_id)
            self.keys.remove_api(api_id)
            return
        self._refresh_api(api)
        self.keys.replace_api(api_id, [(key.id, key.digest) for key in self.db.keys(api_id)])

    def _refresh_api(self, api: ApiRow) -> None:
        current = self.registry.get(api.id)
        if current is not None and (current.version, current.name, current.private) == (
            api.active_version, api.name, api.private
        ):
            return
        try:
            with self._publish:
                self._publish_version(api, self.db.version(api.id, api.active_version))
        except (BundleNotFound, bundle_archive.BadBundleArchive) as error:
            log.error("API %s (%s): bundle missing or unusable (%s); it is not served", api.name, api.id, error)

    # -- create / update / rollback / delete ----------------------------------------------

    def check_create(self, spec: ApiSpec) -> None:
        """Fail fast, before a build, on what would fail after it."""
        if spec.name is None:
            raise validation_error("name: field required", [{"loc": ["name"], "msg": "field required"}])
        if self.db.api_by_name(spec.name) is not None:
            raise _name_taken(spec.name)
        self._limits_for(spec, None)

    def create(self, spec: ApiSpec, source: Path, progress: Callable[[str], None]) -> dict[str, Any]:
        self.check_create(spec)
        assert spec.name is not None
        version = self._build_version(spec, source, None, progress)
        now = time.time()
        api = ApiRow(secrets.token_hex(6), spec.name, version.version, bool(spec.private), now, now)
        key = auth.new_api_key()
        with self._publish:
            try:
                self.db.create_api(api, version, KeyRow(key.id, api.id, key.digest, now))
            except NameTaken:
                raise _name_taken(spec.name) from None
            self._publish_version(api, version)
            self.keys.add(key.id, api.id, key.digest)
        self.on_change(api.id)
        log.info("created API %s (%s) version 1, bundle %s", api.name, api.id, version.bundle_hash[:12])
        return {
            "id": api.id,
            "name": api.name,
            "version": version.version,
            "status": "active",
            "endpoint": f"/run/{api.id}",
            "api_key": key.key,
            "key_id": key.id,
            "bundle_hash": version.bundle_hash,
        }

    def check_update(self, ref: str, spec: ApiSpec) -> ApiRow:
        api = self._api(ref)
        if spec.name is not None and spec.name != api.name:
            other = self.db.api_by_name(spec.name)
            if other is not None and other.id != api.id:
                raise _name_taken(spec.name)
        self._limits_for(spec, self.db.version(api.id, api.active_version))
        return api

    def update(self, ref: str, spec: ApiSpec, source: Path, progress: Callable[[str], None]) -> dict[str, Any]:
        """Build a new version and switch to it; running requests finish on the old one."""
        api = self.check_update(ref, spec)
        current = self.db.version(api.id, api.active_version)
        version = self._build_version(spec, source, current, progress)
        name = spec.name or api.name
        private = api.private if spec.private is None else spec.private
        with self._publish:
            try:
                number = self.db.add_version(api.id, version, name, private)
            except NameTaken:
                raise _name_taken(name) from None
            if number is None:
                raise not_found(f"API {api.id} was deleted during the build")
            api = ApiRow(api.id, name, number, private, api.created_at, time.time())
            self._publish_version(api, self.db.version(api.id, number))
        self.on_change(api.id)
        log.info("API %s (%s) now on version %d, bundle %s", name, api.id, number, version.bundle_hash[:12])
        return self.describe(api.id)

    def rollback(self, ref: str, version: int) -> dict[str, Any]:
        api = self._api(ref)
        target = self.db.version(api.id, version)
        if target is None:
            raise not_found(f"API {api.name} has no version {version}")
        self.on_stage(target.bundle_hash, lambda line: None)
        with self._publish:
            if not self.db.set_active_version(api.id, version):
                raise not_found(f"no API {ref}")
            self._publish_version(api, target)
        self.on_change(api.id)
        log.info("API %s (%s) rolled back to version %d", api.name, api.id, version)
        return self.describe(api.id)

    def delete(self, ref: str) -> None:
        api = self._api(ref)
        with self._publish:
            self.db.delete_api(api.id)
            self.registry.remove(api.id)
            self.keys.remove_api(api.id)
        self.on_change(api.id)
        log.info("deleted API %s (%s)", api.name, api.id)

    # -- keys ---------------------------------------------------------------------------------

    def create_key(self, ref: str) -> dict[str, Any]:
        api = self._api(ref)
        key = auth.new_api_key()
        now = time.time()
        with self._publish:
            if not self.db.add_key(KeyRow(key.id, api.id, key.digest, now)):
                raise not_found(f"no API {ref}")
            self.keys.add(key.id, api.id, key.digest)
        self.on_change(api.id)
        return {"id": key.id, "prefix": key.prefix, "api_key": key.key, "created_at": iso(now)}

    def list_keys(self, ref: str) -> list[dict[str, Any]]:
        api = self._api(ref)
        return [
            {"id": k.id, "prefix": f"{auth.KEY_PREFIX}_{k.id}", "created_at": iso(k.created_at)}
            for k in self.db.keys(api.id)
        ]

    def revoke_key(self, ref: str, key_id: str) -> None:
        api = self._api(ref)
        with self._publish:
            if not self.db.revoke_key(api.id, key_id):
                raise not_found(f"API {api.name} has no key {key_id}")
            self.keys.remove(key_id)
        self.on_change(api.id)

    # -- reading ----------------------------------------------------------------------------

    def list_apis(self) -> list[dict[str, Any]]:
        return [self._summary(api) for api in self.db.list_apis()]

    def describe(self, ref: str) -> dict[str, Any]:
        api = self._api(ref)
        versions = self.db.versions(api.id)
        active = next(v for v in versions if v.version == api.active_version)
        deployment = self.registry.get(api.id)
        routes = deployment.routes if deployment else []
        return {
            **self._summary(api),
            "private": api.private,
            "limits": {
                **self._limits(active.limits).as_dict(),
                "async_timeout_ms": self._async_limits(active.limits).timeout_ms,
            },
            "rate_limit": active.rate_limit,
            "quota": active.quota,
            "routes": [{k: r[k] for k in ("method", "path", "name", "summary")} for r in routes],
            "versions": [
                {
                    "version": v.version,
                    "active": v.version == api.active_version,
                    "bundle_hash": v.bundle_hash,
                    "source": v.source_name,
                    "requirements": v.requirements,
                    "limits": v.limits,
                    "rate_limit": v.rate_limit,
                    "created_at": iso(v.created_at),
                }
                for v in versions
            ],
        }

    def logs(self, ref: str, limit: int) -> list[dict[str, Any]]:
        api = self._api(ref)
        self._flush_calls()
        return [
            {
                "time": iso(row["time"]),
                "request_id": row["request_id"],
                "version": row["version"],
                "method": row["method"],
                "path": row["path"],
                "route": row["route"],
                "status": row["status"],
                "outcome": row["outcome"],
                "fuel_used": row["fuel_used"],
                "duration_ms": round(row["duration_ms"], 3),
                "bytes_in": row["bytes_in"],
                "bytes_out": row["bytes_out"],
                "stdout": row["stdout"],
                "stderr": row["stderr"],
                "logs_truncated": bool(row["logs_truncated"]),
                "error": row["error_detail"],
            }
            for row in self.db.logs(api.id, limit)
        ]

    def usage(self, ref: str) -> dict[str, Any]:
        api = self._api(ref)
        self._flush_calls()
        hours: dict[int, dict[str, Any]] = {}
        totals = _empty_usage()
        for row in self.db.usage(api.id):
            hour = hours.setdefault(row["hour"], {"hour": iso(row["hour"]), **_empty_usage()})
            for bucket in (hour, totals):
                _add_usage(bucket, row)
        day, month = quota.periods()
        keys: dict[str, dict[str, Any]] = {}
        for row in self.db.api_key_usage(api.id, [day, month]):
            period = "day" if row["period"] == day else "month"
            keys.setdefault(row["key_id"], {"key_id": row["key_id"]})[period] = {
                "period": row["period"].split(":", 1)[1], "requests": row["requests"], "fuel": row["fuel"]
            }
        active = self.db.version(api.id, api.active_version)
        return {
            "api_id": api.id,
            "hours": list(hours.values()),
            "totals": totals,
            "quota": active.quota if active else None,
            "keys": list(keys.values()),
        }

    def record(self, entry: InvocationRow, key_id: str | None = None, wait: bool = False) -> None:
        """Log a call (written behind the request, gateway.call_log); with `key_id` (APIs with
        a quota) it also counts towards that key's day and month. Blocks only with `wait`,
        until the entry is written (a job's log entry is written before anyone can read the
        job as finished from another process)."""
        self.calls.add(entry, key_id)
        if wait:
            self.calls.flush()

    def quota_exceeded(self, deployment: Deployment, key_id: str) -> quota.Exceeded | None:
        assert deployment.quota
        periods = list(quota.periods())
        used = self.db.key_usage(key_id, periods)
        for period, (requests, fuel) in self.calls.pending_usage(key_id, periods).items():
            stored = used.get(period, (0, 0))
            used[period] = (stored[0] + requests, stored[1] + fuel)
        return quota.exceeded(deployment.quota, used)

    def _flush_calls(self) -> None:
        """Have this process, and the other workers of this serve, write out their queued calls."""
        self.calls.flush()
        self.flush_others()

    def close(self) -> None:
        """Write out the calls still queued for the log."""
        self.calls.close()

    # -- internals ----------------------------------------------------------------------------

    def _api(self, ref: str) -> ApiRow:
        """An API by id, or else by name."""
        api = self.db.get_api(ref) or self.db.api_by_name(ref)
        if api is None:
            raise not_found(f"no API {ref}")
        return api

    def _summary(self, api: ApiRow) -> dict[str, Any]:
        return {
            "id": api.id,
            "name": api.name,
            "status": "active",
            "version": api.active_version,
            "active_version": api.active_version,
            "endpoint": f"/run/{api.id}",
            "created_at": iso(api.created_at),
            "updated_at": iso(api.updated_at),
        }

    def _build_version(
        self, spec: ApiSpec, source: Path, base: VersionRow | None, progress: Callable[[str], None]
    ) -> VersionRow:
        requirements = spec.requirements if spec.requirements is not None else []
        lines: list[str] = []

        def collect(line: str) -> None:
            lines.append(line)
            progress(line)

        try:
            result = build(
                source,
                self.store,
                requirements=requirements,
                wheelhouse=self.settings.wheelhouse,
                index_url=self.settings.index_url,
                runtime=self.runtime,
                max_source_bytes=self.settings.max_source_mb << 20,
                log=collect,
            )
        except BuildError as error:
            raise from_build(error, lines) from None
        self.runtime.load(result.bundle)  # compile now, not on the first request
        self._share(result.bundle)
        self.on_stage(result.bundle.hash, progress)
        rate_limit = spec.rate_limit.model_dump(exclude_none=True) if spec.rate_limit else (base.rate_limit if base else None)
        key_quota = spec.quota.model_dump(exclude_none=True) if spec.quota else (base.quota if base else None)
        return VersionRow(
            version=1,
            bundle_hash=result.bundle.hash,
            limits=self._limits_for(spec, base),
            rate_limit=rate_limit,
            source_name=source.name,
            requirements=requirements,
            created_at=time.time(),
            quota=key_quota or None,
        )

    def _limits_for(self, spec: ApiSpec, base: VersionRow | None) -> dict[str, int]:
        """The limits to store: asked for, else the previous version's, else the defaults.

        Asking for more than a server-wide cap is refused, naming the cap.
        """
        asked = spec.limits.model_dump(exclude_none=True) if spec.limits else {}
        errors = []
        for name, value in asked.items():
            cap = getattr(self.settings, _CAPS[name])
            if value > cap:
                env = f"WASMGATE_{_CAPS[name].upper()}"
                errors.append({"loc": ["limits", name], "msg": f"{value} exceeds the server cap {cap} ({env})"})
        if errors:
            raise validation_error(f"limits.{errors[0]['loc'][1]}: {errors[0]['msg']}", errors)
        previous = base.limits if base else {}
        limits = {
            name: asked.get(name, previous.get(name, getattr(self.settings, _DEFAULTS[name]))) for name in _DEFAULTS
        }
        if "async_timeout_ms" in asked or "async_timeout_ms" in previous:
            limits["async_timeout_ms"] = asked.get("async_timeout_ms", previous.get("async_timeout_ms"))
        return limits

    def _limits(self, stored: dict[str, int]) -> Limits:
        """Stored limits as runtime Limits, clamped to today's caps (they may have been lowered)."""
        values = {name: min(stored[name], getattr(self.settings, _CAPS[name])) for name in _DEFAULTS}
        return Limits.from_mb(
            **values,
            max_response_bytes=self.settings.max_response_mb << 20,
            max_log_bytes=self.settings.max_log_kb << 10,
        )

    def _async_limits(self, stored: dict[str, int]) -> Limits:
        """The limits of an async job: the same, but its own (capped) timeout."""
        limits = self._limits(stored)
        asked = stored.get("async_timeout_ms", limits.timeout_ms)
        return replace(limits, timeout_ms=min(asked, self.settings.max_async_timeout_ms))

    def _publish_version(self, api: ApiRow, version: VersionRow | None) -> None:
        assert version is not None
        self.registry.put(
            Deployment(
                api_id=api.id,
                name=api.name,
                version=version.version,
                bundle=self._local_bundle(version.bundle_hash),
                limits=self._limits(version.limits),
                async_limits=self._async_limits(version.limits),
                rate_limit=RateLimit(**version.rate_limit) if version.rate_limit else None,
                quota=version.quota,
                private=api.private,
            )
        )

    def _share(self, bundle: Bundle) -> None:
        """Put a build in the shared database (before its version is stored) for the other hosts."""
        if self.db.shared and not self.db.has_bundle_archive(bundle.hash):
            self.db.put_bundle_archive(bundle.hash, bundle_archive.pack(bundle, self.store.compiled_artifacts(bundle)))

    def _local_bundle(self, bundle_hash: str) -> Bundle:
        """A bundle from this host's store; one this host has never seen is fetched from the
        shared database, installed in the store and compiled once (cached like a local build)."""
        if self.db.shared and not self.store.has(bundle_hash):
            data = self.db.get_bundle_archive(bundle_hash)
            if data is not None:
                bundle = bundle_archive.unpack(data, self.store, bundle_hash)
                self.runtime.load(bundle)
                log.info("fetched bundle %s from the shared store", bundle_hash[:12])
                return bundle
        return self.store.get(bundle_hash)


def _name_taken(name: str) -> ApiError:
    return ApiError(409, "CONFLICT", f"an API named {name!r} already exists", {"name": name})


def _empty_usage() -> dict[str, Any]:
    return {"requests": 0, "errors": {}, "fuel": 0, "bytes_in": 0, "bytes_out": 0, "duration_ms": 0.0}


def _add_usage(bucket: dict[str, Any], row: dict[str, Any]) -> None:
    bucket["requests"] += row["requests"]
    if row["outcome"] != "OK":
        bucket["errors"][row["outcome"]] = bucket["errors"].get(row["outcome"], 0) + row["requests"]
    for name in ("fuel", "bytes_in", "bytes_out"):
        bucket[name] += row[name]
    bucket["duration_ms"] = round(bucket["duration_ms"] + row["duration_ms"], 3)
