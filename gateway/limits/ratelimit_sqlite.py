"""Rate limits shared by the worker processes of one `wasmgate serve --workers N`, without Redis.

The same GCRA as `gateway.ratelimit.InProcessRateLimiter`, with each bucket's theoretical
arrival time kept in a SQLite file in the data dir: one write statement per decision (an
upsert that admits or leaves the bucket as it was; SQLite's write lock serialises the
processes), so a key's limit holds exactly across all of them. Wall-clock time (`time.time`)
is the shared clock, as every process runs on one host.

A decision takes a few tens of microseconds, less than a hop to a worker thread and back, so
it is first tried on the caller's thread through a connection that never waits for the file
lock (`timeout=0`); only when another process holds the lock at that moment is it made on a
worker thread, which may wait (measured: the hop was ~7% of the event loop's time under load).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import anyio

from gateway.limits.ratelimit import Decision, RateLimit

_SWEEP_EVERY_S = 60.0
# GCRA in one statement: a bucket's theoretical arrival time moves on by one interval if that
# keeps it within the period (a new bucket always admits); no row comes back when it does not.
_ADMIT = (
    "INSERT INTO buckets (bucket, tat) VALUES (:bucket, :now + :interval)"
    " ON CONFLICT (bucket) DO UPDATE SET tat = max(tat, :now) + :interval"
    " WHERE max(tat, :now) + :interval - :now <= :period + 1e-9"
    " RETURNING tat"
)


class SqliteRateLimiter:
    def __init__(self, path: Path, clock=time.time) -> None:  # noqa: ANN001
        self._conn = _connect(path, timeout_s=5)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS buckets (bucket TEXT PRIMARY KEY, tat REAL NOT NULL)")
        self._lock = threading.Lock()  # the waiting connection, shared by worker threads
        self._inline = _connect(path, timeout_s=0)  # used on the event loop's thread only
        self._clock = clock
        self._next_sweep = 0.0

    async def hit(self, bucket: str, limit: RateLimit, *, burst: int | None = None, cost: int = 1) -> Decision:
        if cost != 1:
            raise ValueError("the SQLite limiter only supports cost=1")
        capacity = burst or limit.requests
        if capacity != limit.requests:  # a bucket of B refilled at R per P: RateLimit(B, B * P / R)
            limit = RateLimit(capacity, limit.per_seconds * capacity / limit.requests)
        try:
            return self._decide(self._inline, bucket, limit)
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                raise
        return await anyio.to_thread.run_sync(self.decide, bucket, limit)

    def decide(self, bucket: str, limit: RateLimit) -> Decision:
        """Decide on this thread, waiting for another process's transaction if need be."""
        with self._lock:
            return self._decide(self._conn, bucket, limit)

    def _decide(self, conn: sqlite3.Connection, bucket: str, limit: RateLimit) -> Decision:
        interval = limit.per_seconds / limit.requests
        now = self._clock()
        if now >= self._next_sweep:
            conn.execute("DELETE FROM buckets WHERE tat <= ?", (now,))
            self._next_sweep = now + _SWEEP_EVERY_S
        # One statement, so one transaction (and one release of the GIL: each is a wait for it
        # while other threads run); SQLITE_BUSY here: nothing was done.
        params = {"bucket": bucket, "now": now, "interval": interval, "period": limit.per_seconds}
        admitted = conn.execute(_ADMIT, params).fetchall()
        if not admitted:  # over the limit: nothing was written
            row = conn.execute("SELECT tat FROM buckets WHERE bucket = ?", (bucket,)).fetchone()
            tat = max(row[0] if row else now, now)
            return Decision(False, limit.requests, 0, tat - now, tat + interval - limit.per_seconds - now)
        new_tat = admitted[0][0]
        remaining = int((limit.per_seconds - (new_tat - now)) / interval + 1e-9)
        return Decision(True, limit.requests, remaining, new_tat - now, 0.0)

    async def aclose(self) -> None:
        self._inline.close()
        self._conn.close()


def _connect(path: Path, timeout_s: float) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA synchronous=OFF")  # limits need not survive a power cut
    return conn
