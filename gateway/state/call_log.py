"""Writes the invocation log, usage and quota charges behind the requests, in batches.

A request only appends its entry to a bounded in-memory queue (no database work, no thread
hop on its path); one writer thread commits whatever has gathered as one transaction. Quota
checks stay exact: charges not yet written are added to what the database says. Readers of
logs and usage call `flush()` first, so they see every call this process answered.

What can be lost: on a graceful stop nothing (`close` writes the queue out); on `kill -9` the
entries of at most the last `FLUSH_INTERVAL_S` (and the batch being written). When the
queue is full (the database cannot keep up) new entries are dropped and counted in
`dropped_total` rather than slowing requests down or growing memory without bound.
"""

from __future__ import annotations

import logging
import threading
from collections import deque

from gateway.limits import quota
from gateway.state.database import Database
from gateway.state.records import Charge, InvocationRow

log = logging.getLogger("wasmgate.gateway")

FLUSH_INTERVAL_S = 0.05
MAX_BATCH = 512


class CallLog:
    def __init__(self, db: Database, max_queue: int = 10_000) -> None:
        self.db = db
        self.max_queue = max_queue
        self._queue: deque[tuple[InvocationRow, str | None]] = deque()
        self._pending: dict[tuple[str, str], list[int]] = {}  # (key, period) -> [requests, fuel]
        self._cond = threading.Condition()
        self._queued = self._written = 0  # sequence numbers, for flush()
        self._stopped = False
        self.dropped_total = 0
        self.written_total = 0
        self._thread = threading.Thread(target=self._run, name="wasmgate-call-log", daemon=True)
        self._thread.start()

    def add(self, entry: InvocationRow, charged_key: str | None = None) -> None:
        """Queue one call's entry; `charged_key` counts it against that key's quota."""
        with self._cond:
            if len(self._queue) >= self.max_queue:
                self.dropped_total += 1
                return
            self._queue.append((entry, charged_key))
            self._queued += 1
            if charged_key is not None:
                for period in quota.periods(entry.time):
                    counts = self._pending.setdefault((charged_key, period), [0, 0])
                    counts[0] += 1
                    counts[1] += entry.fuel_used
            if len(self._queue) >= MAX_BATCH:
                self._cond.notify_all()

    def pending_usage(self, key_id: str, periods: list[str]) -> dict[str, tuple[int, int]]:
        """period -> (requests, fuel) of `key_id` queued but not yet written."""
        with self._cond:
            return {p: tuple(self._pending[(key_id, p)]) for p in periods if (key_id, p) in self._pending}

    def flush(self, timeout_s: float = 10.0) -> None:
        """Return once every entry queued before this call is written (or failed to be)."""
        with self._cond:
            target = self._queued
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._written >= target or self._stopped, timeout_s)

    def close(self) -> None:
        """Write out what is queued and stop the writer."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._queue and not self._stopped:
                    self._cond.wait(FLUSH_INTERVAL_S)
                if not self._queue:
                    if self._stopped:
                        return
                    continue
                batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
            charges = _charges(batch)
            try:
                self.db.record([entry for entry, _ in batch], charges)
            except Exception:
                log.exception("writing %d invocation log entries failed; they are lost", len(batch))
                self.dropped_total += len(batch)
            else:
                self.written_total += len(batch)
            with self._cond:
                for charge in charges:
                    counts = self._pending.get((charge.key_id, charge.period))
                    if counts is not None:
                        counts[0] -= charge.requests
                        counts[1] -= charge.fuel
                        if counts[0] <= 0:
                            del self._pending[(charge.key_id, charge.period)]
                self._written += len(batch)
                self._cond.notify_all()


def _charges(batch: list[tuple[InvocationRow, str | None]]) -> list[Charge]:
    """The batch's quota charges, one per key and period."""
    totals: dict[tuple[str, str, str], list[int]] = {}
    for entry, key_id in batch:
        if key_id is None:
            continue
        for period in quota.periods(entry.time):
            counts = totals.setdefault((entry.api_id, key_id, period), [0, 0])
            counts[0] += 1
            counts[1] += entry.fuel_used
    return [Charge(api, key, period, n, fuel) for (api, key, period), (n, fuel) in totals.items()]
