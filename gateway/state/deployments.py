"""Deploying APIs: create, update (hot swap), rollback, delete, keys, and what they report.

Every method is blocking (builds take tens of seconds, the database is synchronous): the
control plane calls them from worker threads. A change is committed to the database first
and then published to the in-memory `Registry`/`KeyRing`, both under one lock, so the two
never disagree and a change that was answered survives a crash. A build writes nothing to
the database until its bundle is whole in the store, so a deploy cut short (a failed build,
a `kill -9`) leaves the API as it was.

An API whose bundle is missing or damaged on this host (its files do not match their
manifest: runtime.bundle) stays listed, with `status: "unavailable"` and the reason, and its
calls answer `SANDBOX_ERROR` (reason `bundle-damaged`); the other APIs are not affected.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import secrets
import socket
import threading
import time
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

from builder.build_process import BuildOrder, build_in_process
from builder.componentize import NO_SPACE
from builder.errors import BuildError
from gateway import metrics
from gateway.errors import ApiError, from_build, not_found, validation_error
from gateway.limits import quota
from gateway.limits.ratelimit import RateLimit
from gateway.settings import Settings
from gateway.state import auth, config
from gateway.state.accounts import ADMIN, Caller
from gateway.state.build_slots import BuildSlots
from gateway.state.call_log import CallLog
from gateway.state.database import Database, NameTaken
from gateway.state.records import ApiRow, InvocationRow, KeyRow, VersionRow
from gateway.state.registry import Deployment, Registry
from gateway.state.specs import ApiSpec, ConfigSpec, async_limits, runtime_limits, stored_limits
from gateway.state.views import api_summary, iso, log_entry, usage_report
from runtime import Bundle, BundleNotFound, BundleStore, Runtime, bundle_archive
from runtime.bundle import BundleDamaged
from runtime.scratch import gone as process_gone

log = logging.getLogger("wasmgate.gateway")
# A build marked as running this long ago is taken as cut short (its process died).
BUILD_STALE_S = 3600.0
# Log entries a follower reads per query.
FOLLOW_BATCH = 200


class Deployments:
    def __init__(self, settings: Settings, db: Database, store: BundleStore, runtime: Runtime) -> None:
        self.settings = settings
        self.db = db
        self.store = store
        self.runtime = runtime
        self.registry = Registry(on_live=runtime.serve, on_gone=runtime.drain)
        self.calls = CallLog(db)
        self.build_slots = BuildSlots(settings.build_slots_dir, settings.build_workers)
        self.keys = auth.KeyRing()
        self._publish = threading.Lock()
        self._unavailable: dict[str, str] = {}  # API id -> why its active version cannot run here
        # Told after every change this host commits (gateway.state.host_sync tells the other hosts).
        self.on_change: Callable[[str], None] = lambda api_id: None
        # Told of a bundle before a version using it goes live: returns once the other hosts
        # have it (gateway.state.host_sync), so that the switch reaches them at once.
        self.on_stage: Callable[[str, Callable[[str], None]], None] = lambda bundle_hash, progress: None
        # Asks the other worker processes of this `serve`, if any, to write out their call logs.
        self.flush_others: Callable[[], None] = lambda: None

    def load_all(self) -> None:
        """Publish every API's active version and every valid key (at start)."""
        self.refresh_all(self.db.active_versions())

    def refresh_all(self, active: dict[str, VersionRow] | None = None) -> None:
        """Bring this host's view in line with the database: what other hosts changed, or
        everything at start (`active`: the active versions, read beforehand in one query).
        Versions already served stay as they are."""
        apis = self.db.list_apis()
        for api in apis:
            self._refresh_api(api, (active or {}).get(api.id))
        for removed in set(self.registry.ids()) - {api.id for api in apis}:
            self.registry.remove(removed)
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

    @cached_property
    def sealer(self) -> config.Sealer:
        return config.Sealer(self.settings)

    def _refresh_api(self, api: ApiRow, version: VersionRow | None = None) -> None:
        current = self.registry.get(api.id)
        if current is not None and (current.version, current.name, current.private, current.paused) == (
            api.active_version, api.name, api.private, api.paused
        ):
            return
        if version is None or version.version != api.active_version:  # switched since it was read
            version = self.db.version(api.id, api.active_version)
        with self._publish:
            self._publish_version(api, version)

    # -- create / update / rollback / delete ----------------------------------------------

    def check_create(self, spec: ApiSpec, caller: Caller = ADMIN) -> None:
        """Fail fast, before a build, on what would fail after it."""
        if spec.name is None:
            raise validation_error("name: field required", [{"loc": ["name"], "msg": "field required"}])
        if self.db.api_by_name(spec.name) is not None:
            raise _name_taken(spec.name)
        stored_limits(self.settings, spec, None)
        if caller.account is not None:
            plan = self.settings.plans.get(caller.account.plan)
            if plan is not None and plan.max_apis is not None and len(self.db.list_apis(caller.owner)) >= plan.max_apis:
                raise ApiError(
                    403, "PLAN_LIMIT",
                    f"account {caller.account.name!r} has the {plan.max_apis} APIs its plan {caller.account.plan!r} allows",
                    {"plan": caller.account.plan, "max_apis": plan.max_apis},
                )

    def create(
        self, spec: ApiSpec, source: Path, progress: Callable[[str], None], caller: Caller = ADMIN
    ) -> dict[str, Any]:
        self.check_create(spec, caller)
        assert spec.name is not None
        version = self._build_version(spec, source, None, progress)
        now = time.time()
        api = ApiRow(secrets.token_hex(6), spec.name, version.version, bool(spec.private), now, now, caller.owner)
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
            "owner": api.owner,
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
        stored_limits(self.settings, spec, self.db.version(api.id, api.active_version))
        return api

    def update(self, ref: str, spec: ApiSpec, source: Path, progress: Callable[[str], None]) -> dict[str, Any]:
        """Build a new version and switch to it; running requests finish on the old one."""
        api = self.check_update(ref, spec)
        current = self.db.version(api.id, api.active_version)
        lines: list[str] = []

        def collect(line: str) -> None:
            lines.append(line)
            progress(line)

        self.db.set_building(api.id, time.time(), f"{socket.gethostname()}:{os.getpid()}")
        try:
            version = self._build_version(spec, source, current, collect)
        except ApiError as error:
            if error.code == "BUILD_FAILED":
                self._record_failure(api, spec, source, current, error)
            raise
        finally:
            self.db.set_building(api.id, None)
        return self._add_version(api, spec, version)

    def patch(self, ref: str, spec: ConfigSpec) -> dict[str, Any]:
        """A new version with the active one's bundle and source and what `spec` changes
        (limits, rate limit, quota, privacy, variables, secrets, auth, CORS): no rebuild."""
        api = self._api(ref)
        current = self.db.version(api.id, api.active_version)
        assert current is not None
        version = VersionRow(
            version=1,
            bundle_hash=current.bundle_hash,
            limits=stored_limits(self.settings, spec, current),
            rate_limit=spec.rate_limit.model_dump(exclude_none=True) if spec.rate_limit else current.rate_limit,
            source_name=current.source_name,
            requirements=current.requirements,
            created_at=time.time(),
            quota=(spec.quota.model_dump(exclude_none=True) or None) if spec.quota else current.quota,
            source_digest=current.source_digest,
            config=config.merged(current.config, spec, self.sealer),
        )
        return self._add_version(api, ApiSpec(private=spec.private), version)

    def _add_version(self, api: ApiRow, spec: ApiSpec, version: VersionRow) -> dict[str, Any]:
        name = spec.name or api.name
        private = api.private if spec.private is None else spec.private
        with self._publish:
            try:
                number = self.db.add_version(api.id, version, name, private)
            except NameTaken:
                raise _name_taken(name) from None
            if number is None:
                raise not_found(f"API {api.id} was deleted during the build")
            api = self.db.get_api(api.id) or api
            self._publish_version(api, self.db.version(api.id, number))
        self.on_change(api.id)
        log.info("API %s (%s) now on version %d, bundle %s", name, api.id, number, version.bundle_hash[:12])
        return self.describe(api.id)

    def _record_failure(
        self, api: ApiRow, spec: ApiSpec, source: Path, base: VersionRow | None, error: ApiError
    ) -> None:
        """Keep a failed build among the API's versions, with its log (never made active)."""
        version = VersionRow(
            version=1,
            bundle_hash="",
            limits=base.limits if base else {},
            rate_limit=None,
            source_name=source.name,
            requirements=spec.requirements if spec.requirements is not None else [],
            created_at=time.time(),
            build_log="\n".join(filter(None, [str(error.details.get("log", "")), f"error: {error.message}"])),
            source_digest=self._keep_source(source),
        )
        number = self.db.add_failed_version(api.id, version)
        log.info("API %s (%s): the build of version %s failed; version %d still serves", api.name, api.id, number, api.active_version)

    def set_paused(self, ref: str, paused: bool) -> dict[str, Any]:
        """Pause (calls answer API_PAUSED, nothing runs; keys and data stay) or resume."""
        api = self._api(ref)
        with self._publish:
            if not self.db.set_paused(api.id, paused):
                raise not_found(f"no API {ref}")
            api = self.db.get_api(api.id)
            if api is None:
                raise not_found(f"no API {ref}")
            self._publish_version(api, self.db.version(api.id, api.active_version))
        self.on_change(api.id)
        log.info("API %s (%s) %s", api.name, api.id, "paused" if paused else "resumed")
        return self.describe(api.id)

    def source(self, ref: str, number: int) -> tuple[str, bytes]:
        """A version's source as deployed: its file name and bytes (a .py file, or a .zip)."""
        api = self._api(ref)
        version = self.db.version(api.id, number)
        if version is None:
            raise not_found(f"API {api.name} has no version {number}")
        data = self.db.get_source(version.source_digest) if version.source_digest else None
        if data is None:
            raise not_found(f"version {number} of API {api.name} was deployed before sources were kept")
        return version.source_name, data

    def check_access(self, ref: str, caller: Caller) -> ApiRow:
        """The API `ref` if `caller` may manage it; another account's API is not found (404),
        so that its existence is not revealed."""
        api = self._api(ref)
        if not caller.may_manage(api.owner):
            raise not_found(f"no API {ref}")
        return api

    def rollback(self, ref: str, version: int) -> dict[str, Any]:
        api = self._api(ref)
        target = self.db.version(api.id, version)
        if target is None:
            raise not_found(f"API {api.name} has no version {version}")
        if target.status != "ready":
            raise ApiError(409, "CONFLICT", f"version {version} of API {api.name} failed to build; it cannot serve",
                           {"version": version, "status": target.status})
        problem = self._unusable(self._serving_bundle(target.bundle_hash))
        if problem is not None:  # refused before anything is switched
            raise ApiError(
                409, "CONFLICT", f"version {version}'s bundle cannot run on this host; deploy it again",
                {"reason": BundleDamaged.reason, "detail": problem},
            )
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
            self._unavailable.pop(api.id, None)
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

    def list_apis(self, caller: Caller = ADMIN) -> list[dict[str, Any]]:
        apis = self.db.list_apis() if caller.is_admin else self.db.list_apis(caller.owner)
        return [self._summary(api) for api in apis]

    def _summary(self, api: ApiRow) -> dict[str, Any]:
        """`api_summary`, saying so when the active version cannot run on this host."""
        summary = api_summary(api)
        if not api.paused and _building(api):
            summary["status"] = "deploying"
        problem = self._unavailable.get(api.id)
        if problem is not None:
            summary["status"] = "unavailable"
            summary["error"] = {
                "code": BundleDamaged.code, "reason": BundleDamaged.reason, "message": BundleDamaged.message,
                "detail": problem,
            }
        return summary

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
                **runtime_limits(self.settings, active.limits).as_dict(),
                "async_timeout_ms": async_limits(self.settings, active.limits).timeout_ms,
            },
            "rate_limit": active.rate_limit,
            "quota": active.quota,
            **config.public_view(active.config),
            "routes": [{k: r[k] for k in ("method", "path", "name", "summary")} for r in routes],
            "versions": [
                {
                    "version": v.version,
                    "status": v.status,
                    "active": v.version == api.active_version,
                    "bundle_hash": v.bundle_hash or None,
                    "source": v.source_name,
                    "requirements": v.requirements,
                    "limits": v.limits,
                    "rate_limit": v.rate_limit,
                    "created_at": iso(v.created_at),
                    **({"build_log": v.build_log} if v.status == "failed" else {}),
                }
                for v in versions
            ],
        }

    def logs(self, ref: str, limit: int, **filters: Any) -> list[dict[str, Any]]:
        """The latest calls, newest first; `filters`: status, outcome, since (a Unix time)."""
        api = self._api(ref)
        self._flush_calls()
        return [log_entry(row) for row in self.db.logs(api.id, limit, **filters)]

    def last_log_id(self, api_id: str) -> int:
        """Where following the log starts: after every call answered so far, by any worker
        process of this serve (their queued entries are written first)."""
        self._flush_calls()
        return self.db.last_log_id(api_id)

    def logs_after(self, api_id: str, after_id: int, **filters: Any) -> tuple[list[dict[str, Any]], int]:
        """Calls logged after the one with id `after_id`, oldest first, and the last id seen
        (a follower polls this; the call log writes its queue every 50 ms anyway)."""
        rows = self.db.logs(api_id, FOLLOW_BATCH, after_id=after_id, **filters)
        return [log_entry(row) for row in rows], (rows[-1]["id"] if rows else after_id)

    def usage(self, ref: str) -> dict[str, Any]:
        api = self._api(ref)
        self._flush_calls()
        day, month = quota.periods()
        active = self.db.version(api.id, api.active_version)
        return usage_report(
            api.id, self.db.usage(api.id), self.db.api_key_usage(api.id, [day, month]), day, active.quota if active else None
        )

    def record(self, entry: InvocationRow, key_id: str | None = None, wait: bool = False) -> None:
        """Log a call (written behind the request, gateway.state.call_log); with `key_id` (APIs with
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

    def _build_version(
        self, spec: ApiSpec, source: Path, base: VersionRow | None, progress: Callable[[str], None]
    ) -> VersionRow:
        requirements = spec.requirements if spec.requirements is not None else []
        lines: list[str] = []

        def collect(line: str) -> None:
            lines.append(line)
            progress(line)

        started = time.perf_counter()
        order = BuildOrder(
            source=str(source),
            store_dir=str(self.store.root),
            requirements=requirements,
            wheelhouse=str(self.settings.wheelhouse) if self.settings.wheelhouse else None,
            index_url=self.settings.index_url,
            max_source_bytes=self.settings.max_source_mb << 20,
            max_memory_bytes=self.settings.max_memory_mb << 20,
        )
        try:
            with self.build_slots.held(lambda: collect(
                f"queued: all {self.build_slots.count} build slots of this host are busy; waiting for one"
            )):
                built = build_in_process(order, collect)  # its memory is the build process's, not ours
            bundle = self.store.get(built.bundle_hash)
            self.runtime.load(bundle)  # mapped now, not on the first request (compiled by the build)
            self.store.trim_compiled()  # within WASMGATE_COMPILED_CACHE_MB; this one, loaded last, stays
        except BuildError as error:
            metrics.observe_build("failed", time.perf_counter() - started)
            raise from_build(error, lines) from None
        except BundleDamaged as error:  # damaged between the build's check and now
            metrics.observe_build("failed", time.perf_counter() - started)
            raise from_build(BuildError(f"the built bundle is damaged: {error.detail}"), lines) from None
        except OSError as error:
            if error.errno in (errno.ENOSPC, errno.EDQUOT):
                raise from_build(BuildError(NO_SPACE, {"reason": "no-space"}), lines) from None
            raise
        metrics.observe_build("cached" if built.cached else "built", time.perf_counter() - started)
        self.store.touch(bundle.hash)  # spared by the store's collection until its version is recorded
        self._share(bundle)
        self.on_stage(bundle.hash, progress)
        rate_limit = spec.rate_limit.model_dump(exclude_none=True) if spec.rate_limit else (base.rate_limit if base else None)
        key_quota = spec.quota.model_dump(exclude_none=True) if spec.quota else (base.quota if base else None)
        return VersionRow(
            version=1,
            bundle_hash=bundle.hash,
            limits=stored_limits(self.settings, spec, base),
            rate_limit=rate_limit,
            source_name=source.name,
            requirements=requirements,
            created_at=time.time(),
            quota=key_quota or None,
            source_digest=self._keep_source(source),
            config=config.merged(base.config if base else None, spec, self.sealer),
        )

    def _keep_source(self, source: Path) -> str | None:
        """Store the deployed source (content-addressed) for `GET .../versions/{n}/source`."""
        try:
            data = source.read_bytes()
        except OSError:
            return None
        digest = hashlib.sha256(data).hexdigest()
        self.db.put_source(digest, data)
        return digest

    def _publish_version(self, api: ApiRow, version: VersionRow | None) -> None:
        """Serve `version` of `api` from now on (lock held). A version whose bundle is missing
        or damaged here is published too, as unavailable: its calls answer a typed error."""
        assert version is not None
        bundle = self._serving_bundle(version.bundle_hash)
        problem = self._unusable(bundle)
        if problem is None:
            self._unavailable.pop(api.id, None)
        elif self._unavailable.get(api.id) != problem:
            self._unavailable[api.id] = problem
            log.error(
                "API %s (%s) version %d cannot run on this host: %s; its calls answer %s (%s) until it is deployed again",
                api.name, api.id, version.version, problem, BundleDamaged.code, BundleDamaged.reason,
            )
        env, hidden = config.guest_env(version.config, self.sealer) if version.config else ({}, ())
        plan = self._plan(api.owner)
        self.registry.put(
            Deployment(
                api_id=api.id,
                name=api.name,
                version=version.version,
                bundle=bundle,
                limits=runtime_limits(self.settings, version.limits),
                async_limits=async_limits(self.settings, version.limits),
                rate_limit=RateLimit(**version.rate_limit) if version.rate_limit else None,
                quota=version.quota,
                private=api.private,
                paused=api.paused,
                public=(version.config or {}).get("auth") == "public",
                cors=(version.config or {}).get("cors"),
                env=env,
                hidden=hidden,
                owner=api.owner,
                account_limit=RateLimit(plan.requests, plan.per_seconds) if plan and plan.requests else None,
                account_daily=RateLimit(plan.requests_per_day, 86_400.0) if plan and plan.requests_per_day else None,
            )
        )

    def _plan(self, owner: str | None):
        """The plan of the account owning an API (None: the admin's API, or no such plan)."""
        if owner is None:
            return None
        account = self.db.get_account(owner)
        return self.settings.plans.get(account.plan) if account else None

    def _serving_bundle(self, bundle_hash: str) -> Bundle:
        """The bundle to serve for `bundle_hash`: from this host's store (or the shared one), or
        a stand-in that cannot run when it is missing or its manifest is unreadable."""
        try:
            return self._local_bundle(bundle_hash)
        except BundleNotFound:
            detail = f"bundle {bundle_hash[:12]} is missing from this host's store"
        except BundleDamaged as error:
            detail = error.detail
        except bundle_archive.BadBundleArchive as error:
            detail = str(error)
        return Bundle.unusable(self.store.bundle_dir(bundle_hash), bundle_hash, detail)

    def _unusable(self, bundle: Bundle) -> str | None:
        """Why `bundle` cannot run here (checked once: `Runtime.check`), or None."""
        try:
            self.runtime.check(bundle)
        except BundleDamaged as error:
            return error.detail
        except OSError as error:  # e.g. no space to write its precompiled file: tried again per call
            return f"bundle {bundle.hash[:12]} could not be loaded ({error.strerror or error})"
        return None

    def _share(self, bundle: Bundle) -> None:
        """Put a build in the shared database (before its version is stored) for the other hosts."""
        if self.db.shared and not self.db.has_bundle_archive(bundle.hash):
            self.db.put_bundle_archive(bundle.hash, bundle_archive.pack(
                bundle, self.store.compiled_artifacts(bundle), self.store.layer_files(bundle),
                self.store.component_reference(bundle),
            ))

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


def _building(api: ApiRow) -> bool:
    """Whether a build of a new version of `api` is running: marked, and neither older than
    BUILD_STALE_S nor marked by a process of this host that is gone (killed mid-build)."""
    if api.building_since is None or time.time() - api.building_since >= BUILD_STALE_S:
        return False
    host, _, pid = (api.building_by or "").rpartition(":")
    return not (host == socket.gethostname() and process_gone(pid))


def _name_taken(name: str) -> ApiError:
    return ApiError(409, "CONFLICT", f"an API named {name!r} already exists", {"name": name})
