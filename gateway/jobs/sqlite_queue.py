"""The job queue without Redis: a table in `data_dir/jobs.db` (SQLite, WAL, synchronous=FULL).

A job's row is committed before its 202 answer, so it survives a crash or restart. Small
bodies are stored in the row; a spooled body and uploaded files are moved to
`data_dir/jobs/<job id>/` (deleted when the job finishes). Claiming is one atomic
`UPDATE ... RETURNING` of the oldest job that is queued or whose lease ran out (its worker
died): several gateway and `wasmgate worker` processes on one data dir share the queue. A
running job's worker renews the lease; cancelling sets a flag the worker polls every 20 ms.
Idle workers look for work every 200 ms, and at once when this process submitted a job.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from gateway.jobs.model import (
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    Claim,
    JobRecord,
    abandoned_result,
    rebuild_request,
    request_meta,
)
from runtime import SandboxRequest

POLL_S = 0.2
CANCEL_POLL_S = 0.02
PURGE_EVERY_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    api_id TEXT NOT NULL,
    state TEXT NOT NULL,
    request BLOB NOT NULL,     -- JSON: everything but the body and file contents
    body BLOB,                 -- the body, unless it is the file jobs/<id>/body
    result BLOB,               -- JSON, once finished
    attempts INTEGER NOT NULL DEFAULT 0,
    cancel INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    lease_until REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    expires_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, created_at);
"""
_RECORD = "id, api_id, state, attempts, cancel, created_at, updated_at, expires_at, result"


class SqliteJobQueue:
    backend = "sqlite"

    def __init__(self, data_dir: Path, lease_s: float, result_ttl_s: float, max_attempts: int) -> None:
        self.files_dir = data_dir / "jobs"
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self.lease_s = lease_s
        self.result_ttl_s = result_ttl_s
        self.max_attempts = max_attempts
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(data_dir / "jobs.db", check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA busy_timeout=10000")
            self._conn.executescript(_SCHEMA)
        self._wake: asyncio.Event | None = None
        self._purged_at = 0.0

    # -- producer side ------------------------------------------------------------------------

    async def submit(self, job_id: str, api_id: str, request: SandboxRequest, request_id: str) -> None:
        await asyncio.to_thread(self._submit, job_id, api_id, request, request_id)
        if self._wake is not None:
            self._wake.set()

    def _submit(self, job_id: str, api_id: str, request: SandboxRequest, request_id: str) -> None:
        job_dir = self.files_dir / job_id
        body: bytes | None = None
        if isinstance(request.body, Path):
            job_dir.mkdir(exist_ok=True)
            shutil.move(request.body, job_dir / "body")
        else:
            body = request.body
        if request.files and request.upload_dir is not None:
            job_dir.mkdir(exist_ok=True)
            shutil.move(request.upload_dir, job_dir / "files")
        now = time.time()
        with self._lock:
            self._conn.execute(
                "INSERT INTO jobs (id, api_id, state, request, body, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (job_id, api_id, QUEUED, orjson.dumps(request_meta(request, request_id)), body, now, now),
            )

    async def get(self, job_id: str) -> JobRecord | None:
        return await asyncio.to_thread(self._get, job_id)

    def _get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {_RECORD} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _record(row) if row is not None and not _expired(row) else None

    async def depth(self) -> dict[str, int]:
        return await asyncio.to_thread(self._depth)

    def _depth(self) -> dict[str, int]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT state, COUNT(*) FROM jobs WHERE state IN (?, ?) GROUP BY state", (QUEUED, RUNNING)
            ).fetchall()
        return {QUEUED: 0, RUNNING: 0, **{state: count for state, count in rows}}

    async def list(self, api_ids: list[str], state: str | None, limit: int, before: float | None) -> list[JobRecord]:
        """Jobs of these APIs, newest first, created before `before`, in `state` if given."""
        return await asyncio.to_thread(self._list, api_ids, state, limit, before)

    def _list(self, api_ids: list[str], state: str | None, limit: int, before: float | None) -> list[JobRecord]:
        if not api_ids:
            return []
        where = [f"api_id IN ({', '.join('?' * len(api_ids))})", "(expires_at IS NULL OR expires_at >= ?)"]
        args: list = [*api_ids, time.time()]
        if state is not None:
            where.append("state = ?")
            args.append(state)
        if before is not None:
            where.append("created_at < ?")
            args.append(before)
        query = f"SELECT {_RECORD} FROM jobs WHERE {' AND '.join(where)} ORDER BY created_at DESC LIMIT ?"
        with self._lock:
            rows = self._conn.execute(query, (*args, limit)).fetchall()
        return [_record(row) for row in rows]

    async def cancel(self, job_id: str) -> JobRecord | None:
        return await asyncio.to_thread(self._cancel, job_id)

    def _cancel(self, job_id: str) -> JobRecord | None:
        now = time.time()
        with self._lock:  # SET expressions see the row as it was: a queued job ends here
            row = self._conn.execute(
                "UPDATE jobs SET cancel = 1,"
                " state = CASE WHEN state = ? THEN ? ELSE state END,"
                " expires_at = CASE WHEN state = ? THEN ? ELSE expires_at END,"
                " body = CASE WHEN state = ? THEN NULL ELSE body END,"
                " updated_at = ?"
                f" WHERE id = ? AND state IN (?, ?) RETURNING {_RECORD}",
                (QUEUED, CANCELLED, QUEUED, now + self.result_ttl_s, QUEUED, now, job_id, QUEUED, RUNNING),
            ).fetchone()
        if row is None:
            return self._get(job_id)
        if row["state"] == CANCELLED:
            shutil.rmtree(self.files_dir / job_id, ignore_errors=True)
        return _record(row)

    # -- worker side --------------------------------------------------------------------------

    async def claim(self, consumer: str, wait_s: float) -> Claim | None:
        if self._wake is None:
            self._wake = asyncio.Event()
        deadline = time.monotonic() + wait_s
        while True:
            self._wake.clear()
            claim = await asyncio.to_thread(self._claim, consumer)
            remaining = deadline - time.monotonic()
            if claim is not None or remaining <= 0:
                return claim
            try:
                await asyncio.wait_for(self._wake.wait(), min(POLL_S, remaining))
            except TimeoutError:
                pass

    def _claim(self, consumer: str) -> Claim | None:
        while True:
            now = time.time()
            self._purge(now)
            with self._lock:
                row = self._conn.execute(
                    "UPDATE jobs SET state = ?, attempts = attempts + 1, worker = ?, lease_until = ?, updated_at = ?"
                    " WHERE id = (SELECT id FROM jobs WHERE state = ? OR (state = ? AND lease_until < ?)"
                    "             ORDER BY created_at LIMIT 1)"
                    " RETURNING id, api_id, request, attempts, cancel",
                    (RUNNING, consumer, now + self.lease_s, now, QUEUED, RUNNING, now),
                ).fetchone()
            if row is None:
                return None
            claim = Claim(row["id"], row["api_id"], row["attempts"], orjson.loads(row["request"]), consumer)
            if row["cancel"]:  # asked while its previous worker, now gone, ran it
                self._finish(claim, CANCELLED, None)
            elif claim.attempt > self.max_attempts:
                self._finish(claim, FAILED, abandoned_result(claim.attempt))
            else:
                return claim

    def _purge(self, now: float) -> None:
        if now - self._purged_at < PURGE_EVERY_S:
            return
        self._purged_at = now
        with self._lock:
            self._conn.execute("DELETE FROM jobs WHERE expires_at < ?", (now,))

    async def materialize(self, claim: Claim, workdir: Path) -> SandboxRequest:
        def load() -> SandboxRequest:
            job_dir = self.files_dir / claim.job_id
            with self._lock:
                row = self._conn.execute("SELECT body FROM jobs WHERE id = ?", (claim.job_id,)).fetchone()
            body = row["body"] if row is not None and row["body"] is not None else job_dir / "body"
            return rebuild_request(claim.meta, body, job_dir / "files")

        return await asyncio.to_thread(load)

    async def renew(self, claim: Claim) -> bool:
        def extend() -> bool:
            with self._lock:
                cursor = self._conn.execute(
                    "UPDATE jobs SET lease_until = ? WHERE id = ? AND attempts = ? AND state = ?",
                    (time.time() + self.lease_s, claim.job_id, claim.attempt, RUNNING),
                )
            return cursor.rowcount == 1

        return await asyncio.to_thread(extend)

    async def wait_cancel(self, claim: Claim) -> None:
        def asked() -> bool:
            with self._lock:
                row = self._conn.execute("SELECT cancel FROM jobs WHERE id = ?", (claim.job_id,)).fetchone()
            return row is not None and bool(row["cancel"])

        while not await asyncio.to_thread(asked):
            await asyncio.sleep(CANCEL_POLL_S)

    async def finish(self, claim: Claim, state: str, result: dict[str, Any] | None) -> bool:
        return await asyncio.to_thread(self._finish, claim, state, result)

    def _finish(self, claim: Claim, state: str, result: dict[str, Any] | None) -> bool:
        now = time.time()
        with self._lock:
            cursor = self._conn.execute(
                "UPDATE jobs SET state = ?, result = ?, body = NULL, worker = NULL, lease_until = NULL,"
                " updated_at = ?, expires_at = ? WHERE id = ? AND attempts = ? AND state = ?",
                (state, orjson.dumps(result) if result is not None else None, now, now + self.result_ttl_s,
                 claim.job_id, claim.attempt, RUNNING),
            )
        if cursor.rowcount != 1:
            return False
        shutil.rmtree(self.files_dir / claim.job_id, ignore_errors=True)
        return True

    async def release(self, claim: Claim) -> None:
        def give_back() -> None:
            with self._lock:
                self._conn.execute(
                    "UPDATE jobs SET state = ?, worker = NULL, lease_until = NULL, updated_at = ?"
                    " WHERE id = ? AND attempts = ? AND state = ?",
                    (QUEUED, time.time(), claim.job_id, claim.attempt, RUNNING),
                )

        await asyncio.to_thread(give_back)

    async def aclose(self) -> None:
        with self._lock:
            self._conn.close()


def _expired(row: sqlite3.Row) -> bool:
    return row["expires_at"] is not None and row["expires_at"] < time.time()


def _record(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        id=row["id"],
        api_id=row["api_id"],
        state=row["state"],
        attempts=row["attempts"],
        cancel_requested=bool(row["cancel"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        expires_at=row["expires_at"],
        result=orjson.loads(row["result"]) if row["result"] is not None else None,
    )
