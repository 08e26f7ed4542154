"""Keeps every gateway host's view of APIs and keys in line with the shared database.

A host that commits a change (deploy, hot swap, rollback, delete, key created or revoked)
publishes the API's id on a Redis channel; every other host re-reads that API from the
database at once. Messages can be missed (Redis down, a host reconnecting), so each host
also re-reads everything every `sync_interval_s`: the staleness of a missed change is
bounded by that interval. Without Redis only the periodic re-read runs.

A new bundle is staged before its version goes live: the deploying host announces it, every
other host fetches and loads it (tens of MB from the shared database, most of a second on a
busy host) and acknowledges, and only then, or after `stage_timeout_s`, is the switch
committed. So the switch itself, on every host, is a re-read of two rows. Redis' PUBLISH
answers how many subscribers got the message: that is how many acknowledgements to wait for.

The worker processes of one host's `serve --workers N` tell each other through the data dir
(gateway.state.worker_sync, `local`): a change is on every worker before it is answered.

Runs in one daemon thread with a synchronous Redis client: the work it triggers (database
reads, fetching and loading a bundle) is blocking anyway.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import Callable

import redis

from gateway.state.deployments import Deployments
from gateway.state.worker_sync import WorkerSync

log = logging.getLogger("wasmgate.sync")

CHANNEL = "wasmgate:changes"


class HostSync:
    def __init__(
        self,
        deployments: Deployments,
        redis_url: str | None,
        interval_s: float,
        stage_timeout_s: float,
        local: WorkerSync | None = None,
    ) -> None:
        self.deployments = deployments
        self.local = local
        self.interval_s = interval_s
        self.stage_timeout_s = stage_timeout_s
        self.host_id = uuid.uuid4().hex
        self.messages_total = 0
        self.refreshes_total = 0
        self.staged_total = 0  # stage requests of other hosts this host answered
        self.stage_timeouts_total = 0  # deploys of this host that went live before every host had staged
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2) if redis_url else None
        self._subscribed = False
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wasmgate-sync", daemon=True)

    def start(self) -> None:
        self.deployments.on_change = self.publish
        self.deployments.on_stage = self.stage
        if self.local is not None:
            self.deployments.flush_others = self.local.flush_all
            self.local.start()
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        if self.local is not None:
            self.local.stop()
        if self._redis is not None:
            self._redis.close()

    def publish(self, api_id: str) -> None:
        """Tell this host's other workers that `api_id` changed (returns once they have it), and
        the other hosts (best effort: the periodic re-read covers a loss)."""
        if self.local is not None:
            self.local.changed(api_id)
        if self._redis is None:
            return
        try:
            self._redis.publish(CHANNEL, json.dumps({"api": api_id, "host": self.host_id}))
        except redis.RedisError as error:
            log.warning("could not announce a change of API %s (%s); other hosts see it within %.0f s",
                        api_id, error, self.interval_s)

    def stage(self, bundle_hash: str, progress: Callable[[str], None]) -> None:
        """Have every other host fetch and load `bundle_hash`; return when all have, or after
        `stage_timeout_s` (a host that is slow or gone switches later, when it has fetched it)."""
        if self._redis is None:
            return
        reply = f"{CHANNEL}:staged:{uuid.uuid4().hex}"
        try:
            receivers = self._redis.publish(
                CHANNEL, json.dumps({"stage": bundle_hash, "host": self.host_id, "reply": reply})
            )
            others = receivers - (1 if self._subscribed else 0)
            if others <= 0:
                return
            progress(f"waiting for {others} other host(s) to load bundle {bundle_hash[:12]}")
            missing = self._await_acknowledgements(reply, others)
        except redis.RedisError as error:
            log.warning("could not stage bundle %s on the other hosts (%s)", bundle_hash[:12], error)
            return
        if missing:
            self.stage_timeouts_total += 1
            log.warning("%d host(s) did not load bundle %s within %.0f s; they switch once they have fetched it",
                        missing, bundle_hash[:12], self.stage_timeout_s)

    def _await_acknowledgements(self, reply: str, expected: int) -> int:
        """How many of `expected` hosts had not acknowledged on `reply` by the deadline."""
        deadline = time.monotonic() + self.stage_timeout_s
        try:
            while expected > 0 and (remaining := deadline - time.monotonic()) > 0:
                # Short waits: the client's socket timeout is 2 s.
                if self._redis.blpop([reply], timeout=min(remaining, 1.0)) is not None:
                    expected -= 1
        finally:
            self._redis.delete(reply)
        return expected

    def _run(self) -> None:
        next_refresh = time.monotonic() + self.interval_s
        pubsub = None
        while not self._stopped.is_set():
            if self._redis is not None and pubsub is None:
                pubsub = self._subscribe()
            wait = max(0.0, next_refresh - time.monotonic())
            if pubsub is not None:
                try:
                    message = pubsub.get_message(ignore_subscribe_messages=True, timeout=min(wait, 1.0))
                except (redis.RedisError, OSError) as error:
                    log.warning("change notifications lost (%s); re-reading every %.0f s until Redis is back",
                                error, self.interval_s)
                    pubsub = None
                    self._subscribed = False
                    message = None
                    next_refresh = time.monotonic()  # we may have missed something
                if message is not None:
                    self._on_message(message)
            else:
                self._stopped.wait(min(wait, 1.0))
            if time.monotonic() >= next_refresh:
                self._guarded(self.deployments.refresh_all)
                self.refreshes_total += 1
                next_refresh = time.monotonic() + self.interval_s

    def _subscribe(self):  # noqa: ANN202 - redis' PubSub
        try:
            pubsub = self._redis.pubsub()
            pubsub.subscribe(CHANNEL)
            self._subscribed = True
            return pubsub
        except (redis.RedisError, OSError):
            self._stopped.wait(1.0)
            return None

    def _on_message(self, message: dict) -> None:
        try:
            event = json.loads(message["data"])
        except (TypeError, ValueError):
            return
        if event.get("host") == self.host_id:
            return
        self.messages_total += 1
        if "stage" in event:
            self._guarded(self.deployments.stage, event["stage"])
            self.staged_total += 1
            self._acknowledge(event["reply"])
        else:
            self._guarded(self.deployments.refresh, event["api"])

    def _acknowledge(self, reply: str) -> None:
        """Tell the deploying host this one is ready (also when staging failed: it need not wait)."""
        try:
            with self._redis.pipeline() as pipe:
                pipe.rpush(reply, self.host_id).expire(reply, 60).execute()
        except redis.RedisError as error:
            log.warning("could not acknowledge a staged bundle (%s)", error)

    def _guarded(self, action, *args) -> None:  # noqa: ANN001
        try:
            action(*args)
        except Exception:  # a bad row or a failed fetch must not stop the sync thread
            log.exception("syncing with the database failed")
