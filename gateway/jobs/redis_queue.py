"""The job queue in Redis (>= 6.2): a stream with a consumer group, and one hash per job.

- `submit`: the hash `wasmgate:job:<id>` (state, request JSON, body and uploaded files as
  bytes) and an entry `{job: <id>}` on the stream `wasmgate:jobs`, in one MULTI.
- `claim`: first `XAUTOCLAIM` of an entry idle longer than the lease (its worker died), else
  `XREADGROUP` (group `workers`, blocking). A script then marks the job running and counts
  the attempt; an entry whose job is already finished or cancelled is acknowledged and
  skipped.
- A running worker renews its lease by re-`XCLAIM`ing its own entry (`JUSTID`), which resets
  its idle time, as long as the entry is still its own.
- `finish` is a script fenced by the attempt number: a worker whose job was taken over stores
  nothing. It stores the result, drops the request's bytes, sets the hash's TTL (result
  expiry), and `XACK`s and `XDEL`s the entry.
- `cancel`: a queued job ends at once; a running one gets a flag and a `PUBLISH` on
  `wasmgate:job-cancel`, which the running worker listens to (and it re-reads the flag every
  second in case it missed the message).

At-least-once: a job whose worker dies runs again from the start. Nothing is lost as long as
Redis keeps what it acknowledged (configure persistence: AOF with `appendfsync everysec` or
`always`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

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

log = logging.getLogger("wasmgate.jobs")

GROUP = "workers"
CANCEL_RECHECK_S = 1.0

_DROP_REQUEST = """
local function drop_request(key)
  for _, field in ipairs(redis.call('HKEYS', key)) do
    if field == 'body' or string.sub(field, 1, 5) == 'file:' then redis.call('HDEL', key, field) end
  end
end
"""
# KEYS job hash; ARGV consumer, now, max attempts -> {status, attempts, api_id, request}
_START = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'missing'} end
if state ~= 'queued' and state ~= 'running' then return {'final'} end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'state', 'running', 'worker', ARGV[1], 'updated_at', ARGV[2])
local status = 'run'
if redis.call('HGET', KEYS[1], 'cancel') == '1' then status = 'cancelled'
elseif attempts > tonumber(ARGV[3]) then status = 'abandoned' end
return {status, attempts, redis.call('HGET', KEYS[1], 'api_id'), redis.call('HGET', KEYS[1], 'request')}
"""
# KEYS stream, job hash; ARGV group, consumer, entry, attempt
_RENEW = """
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #pending == 0 or pending[1][2] ~= ARGV[2] then return 0 end
if redis.call('HGET', KEYS[2], 'attempts') ~= ARGV[4] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
"""
# KEYS stream, job hash; ARGV group, entry, attempt, state, result, now, expires_at, ttl ms
_FINISH = _DROP_REQUEST + """
if redis.call('HGET', KEYS[2], 'attempts') ~= ARGV[3] or redis.call('HGET', KEYS[2], 'state') ~= 'running' then
  return 0
end
redis.call('HSET', KEYS[2], 'state', ARGV[4], 'result', ARGV[5], 'updated_at', ARGV[6], 'expires_at', ARGV[7])
drop_request(KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[8])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
"""
# KEYS stream, job hash; ARGV group, entry, attempt, now, job id
_RELEASE = """
if redis.call('HGET', KEYS[2], 'attempts') ~= ARGV[3] or redis.call('HGET', KEYS[2], 'state') ~= 'running' then
  return 0
end
redis.call('HSET', KEYS[2], 'state', 'queued', 'updated_at', ARGV[4])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('XADD', KEYS[1], '*', 'job', ARGV[5])
return 1
"""
# KEYS job hash, cancel channel; ARGV now, expires_at, ttl ms, job id
_CANCEL = _DROP_REQUEST + """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'queued' then
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'cancel', '1', 'updated_at', ARGV[1], 'expires_at', ARGV[2])
  drop_request(KEYS[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
elseif state == 'running' then
  redis.call('HSET', KEYS[1], 'cancel', '1')
  redis.call('PUBLISH', KEYS[2], ARGV[4])
end
return 1
"""
_RECORD_FIELDS = ("api_id", "state", "attempts", "cancel", "created_at", "updated_at", "expires_at", "result")


class RedisJobQueue:
    backend = "redis"

    def __init__(
        self,
        client: aioredis.Redis,
        lease_s: float,
        result_ttl_s: float,
        max_attempts: int,
        prefix: str = "wasmgate:",
    ) -> None:
        self.client = client
        self.lease_s = lease_s
        self.result_ttl_s = result_ttl_s
        self.max_attempts = max_attempts
        self.prefix = prefix
        self.stream = f"{prefix}jobs"
        self.channel = f"{prefix}job-cancel"
        self._scripts = {
            name: client.register_script(source)
            for name, source in (("start", _START), ("renew", _RENEW), ("finish", _FINISH),
                                 ("release", _RELEASE), ("cancel", _CANCEL))
        }
        self._group_ready = False
        self._autoclaim_from = "0-0"
        self._waiters: dict[str, asyncio.Event] = {}
        self._listener: asyncio.Task | None = None

    @classmethod
    def from_url(cls, url: str, lease_s: float, result_ttl_s: float, max_attempts: int) -> "RedisJobQueue":
        return cls(aioredis.Redis.from_url(url, health_check_interval=30), lease_s, result_ttl_s, max_attempts)

    def _key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:  # from the stream's start: entries added before the group existed are delivered
            await self.client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        self._group_ready = True

    # -- producer side ------------------------------------------------------------------------

    async def submit(self, job_id: str, api_id: str, request: SandboxRequest, request_id: str) -> None:
        def read_bytes() -> dict[str, bytes]:
            data = {"body": request.body.read_bytes() if isinstance(request.body, Path) else request.body}
            data.update({f"file:{i}": upload.path.read_bytes() for i, upload in enumerate(request.files)})
            return data

        await self._ensure_group()
        now = repr(time.time())
        fields: dict[str, Any] = {
            "api_id": api_id,
            "state": QUEUED,
            "attempts": 0,
            "cancel": 0,
            "request": orjson.dumps(request_meta(request, request_id)),
            "created_at": now,
            "updated_at": now,
            **await asyncio.to_thread(read_bytes),
        }
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(self._key(job_id), mapping=fields)
            pipe.xadd(self.stream, {"job": job_id})
            pipe.zadd(self._index(api_id), {job_id: float(now)})
            await pipe.execute()

    def _index(self, api_id: str) -> str:
        """The API's jobs by creation time (members of expired jobs are dropped when listed)."""
        return f"{self.prefix}jobs-of:{api_id}"

    async def list(self, api_ids: list[str], state: str | None, limit: int, before: float | None) -> list[JobRecord]:
        """Jobs of these APIs, newest first, created before `before`, in `state` if given."""
        found: list[JobRecord] = []
        for api_id in api_ids:
            index = self._index(api_id)
            top = "+inf" if before is None else f"({before!r}"
            matched = 0
            while matched < limit:
                page = await self.client.zrevrangebyscore(index, top, "-inf", start=0, num=limit, withscores=True)
                gone = []
                for raw, _score in page:
                    record = await self.get(raw.decode())
                    if record is None:
                        gone.append(raw)
                    elif state is None or record.state == state:
                        found.append(record)
                        matched += 1
                if gone:
                    await self.client.zrem(index, *gone)
                if len(page) < limit:
                    break
                top = f"({page[-1][1]!r}"
        found.sort(key=lambda job: job.created_at, reverse=True)
        return found[:limit]

    async def get(self, job_id: str) -> JobRecord | None:
        values = dict(zip(_RECORD_FIELDS, await self.client.hmget(self._key(job_id), _RECORD_FIELDS)))
        if values["state"] is None:
            return None
        expires_at = float(values["expires_at"]) if values["expires_at"] else None
        if expires_at is not None and expires_at < time.time():
            return None
        return JobRecord(
            id=job_id,
            api_id=values["api_id"].decode(),
            state=values["state"].decode(),
            attempts=int(values["attempts"]),
            cancel_requested=values["cancel"] == b"1",
            created_at=float(values["created_at"]),
            updated_at=float(values["updated_at"]),
            expires_at=expires_at,
            result=orjson.loads(values["result"]) if values["result"] else None,
        )

    async def depth(self) -> dict[str, int]:
        """Entries on the stream that no worker holds (queued; a queued job that was cancelled
        counts until a worker skips its entry) and that a worker holds (running)."""
        length = await self.client.xlen(self.stream)
        running = (await self.client.xpending(self.stream, GROUP))["pending"] if length else 0
        return {QUEUED: length - running, RUNNING: running}

    async def cancel(self, job_id: str) -> JobRecord | None:
        now = time.time()
        await self._scripts["cancel"](
            keys=[self._key(job_id), self.channel],
            args=[repr(now), repr(now + self.result_ttl_s), self._ttl_ms(), job_id],
        )
        return await self.get(job_id)

    # -- worker side --------------------------------------------------------------------------

    async def claim(self, consumer: str, wait_s: float) -> Claim | None:
        await self._ensure_group()
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen())
        while True:
            entry = await self._reclaim(consumer) or await self._read(consumer, wait_s)
            if entry is None:
                return None
            entry_id, fields = entry
            job_id = fields[b"job"].decode()
            status, *rest = await self._scripts["start"](
                keys=[self._key(job_id)], args=[consumer, repr(time.time()), self.max_attempts]
            )
            if status in (b"missing", b"final"):
                await self.client.xack(self.stream, GROUP, entry_id)
                await self.client.xdel(self.stream, entry_id)
                continue
            attempt, api_id, meta = int(rest[0]), rest[1].decode(), orjson.loads(rest[2])
            claim = Claim(job_id, api_id, attempt, meta, consumer, entry_id.decode())
            if status == b"cancelled":  # asked while its previous worker, now gone, ran it
                await self.finish(claim, CANCELLED, None)
            elif status == b"abandoned":
                await self.finish(claim, FAILED, abandoned_result(attempt))
            else:
                return claim

    async def _reclaim(self, consumer: str) -> tuple[bytes, dict] | None:
        """An entry whose worker stopped renewing it (walks the pending list a bit per call)."""
        following, entries, *_ = await self.client.xautoclaim(
            self.stream, GROUP, consumer, min_idle_time=int(self.lease_s * 1000), start_id=self._autoclaim_from,
            count=1,
        )
        self._autoclaim_from = following.decode() if isinstance(following, bytes) else following
        return entries[0] if entries else None

    async def _read(self, consumer: str, wait_s: float) -> tuple[bytes, dict] | None:
        answer = await self.client.xreadgroup(
            GROUP, consumer, {self.stream: ">"}, count=1, block=max(1, int(wait_s * 1000))
        )
        return answer[0][1][0] if answer and answer[0][1] else None

    async def materialize(self, claim: Claim, workdir: Path) -> SandboxRequest:
        names = ["body"] + [f"file:{i}" for i in range(len(claim.meta["files"]))]
        body, *files = await self.client.hmget(self._key(claim.job_id), names)
        upload_dir = workdir / "files"

        def write_files() -> None:
            upload_dir.mkdir(parents=True)
            for spec, data in zip(claim.meta["files"], files):
                (upload_dir / spec["name"]).write_bytes(data or b"")

        if files:
            await asyncio.to_thread(write_files)
        return rebuild_request(claim.meta, body or b"", upload_dir)

    async def renew(self, claim: Claim) -> bool:
        renewed = await self._scripts["renew"](
            keys=[self.stream, self._key(claim.job_id)],
            args=[GROUP, claim.consumer, claim.ref, claim.attempt],
        )
        return renewed == 1

    async def wait_cancel(self, claim: Claim) -> None:
        event = self._waiters[claim.job_id] = asyncio.Event()
        try:
            while True:
                try:
                    if await self.client.hget(self._key(claim.job_id), "cancel") == b"1":
                        return
                except RedisError as error:
                    log.warning("job %s: cannot read its cancel flag: %s", claim.job_id, error)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), CANCEL_RECHECK_S)
                    return
        finally:
            self._waiters.pop(claim.job_id, None)

    async def _listen(self) -> None:
        """Wake `wait_cancel`s of this process on `PUBLISH`ed cancels; reconnects on failure."""
        while True:
            try:
                async with self.client.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            event = self._waiters.get(message["data"].decode())
                            if event is not None:
                                event.set()
            except (RedisError, OSError) as error:
                log.warning("job cancel listener: %s; reconnecting", error)
                await asyncio.sleep(1)

    async def finish(self, claim: Claim, state: str, result: dict[str, Any] | None) -> bool:
        now = time.time()
        done = await self._scripts["finish"](
            keys=[self.stream, self._key(claim.job_id)],
            args=[GROUP, claim.ref, claim.attempt, state, orjson.dumps(result) if result is not None else b"",
                  repr(now), repr(now + self.result_ttl_s), self._ttl_ms()],
        )
        return done == 1

    async def release(self, claim: Claim) -> None:
        await self._scripts["release"](
            keys=[self.stream, self._key(claim.job_id)],
            args=[GROUP, claim.ref, claim.attempt, repr(time.time()), claim.job_id],
        )

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self.client.aclose()

    def _ttl_ms(self) -> int:
        return max(1, int(self.result_ttl_s * 1000))
