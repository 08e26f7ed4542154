"""`GET /v1/apis/{id}/logs`: an API's latest calls, or (`follow=true`) its calls as they happen.

Filters: `status` (an HTTP status), `outcome` (OK, FUEL_EXHAUSTED, ...), `since` (ISO 8601
or Unix seconds). Without `follow` the answer is `{"logs": [...]}`, newest first. With
`follow=true` the stream starts after the latest call (or at `since`, oldest first) and goes
on until the client leaves (or the process stops: gateway.http.stopping): Server-Sent Events (`id: <entry id>`, `data: <entry as JSON>`;
a `Last-Event-ID` header resumes after that entry), or one JSON object per line with
`Accept: application/x-ndjson`. A comment line keeps an idle SSE stream open.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any, AsyncIterator

import anyio
import orjson
from fastapi import APIRouter, Depends, Query, Request, Security
from starlette.responses import Response, StreamingResponse

from gateway.errors import json_response, validation_error
from gateway.http.control import NDJSON, _owned, identify
from gateway.http.schemas import AUTH_ERRORS, BEARER_TOKEN, LOG_STREAM, LogList, errors
from gateway.http.stopping import STOPPING
from gateway.services import services

router = APIRouter(
    prefix="/v1", dependencies=[Depends(identify), Security(BEARER_TOKEN)], responses=AUTH_ERRORS, tags=["APIs"]
)

POLL_S = 0.25
KEEPALIVE_S = 15.0


def _since(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise validation_error(
            "since: give an ISO 8601 time or Unix seconds", [{"loc": ["query", "since"], "msg": "invalid time"}]
        ) from None


@router.get("/apis/{ref}/logs", response_model=LogList, responses={200: LOG_STREAM, **errors(404, 422)})
async def get_logs(
    request: Request,
    ref: str,
    limit: int = Query(50, ge=1, le=1000),
    follow: bool = False,
    status: int | None = Query(None, ge=100, le=599),
    outcome: str | None = Query(None, max_length=64),
    since: str | None = None,
) -> Response:
    svc = services(request)
    api_id = await anyio.to_thread.run_sync(_owned, request, ref)
    filters = {"status": status, "outcome": outcome, "since": _since(since)}
    if not follow:
        return json_response({"logs": await anyio.to_thread.run_sync(lambda: svc.deployments.logs(api_id, limit, **filters))})
    start = request.headers.get("last-event-id", "")
    if start.isdigit():
        after = int(start)
    elif filters["since"] is not None:
        after = 0
    else:
        after = await anyio.to_thread.run_sync(svc.deployments.last_log_id, api_id)
    ndjson = NDJSON in request.headers.get("accept", "")
    stream = _follow(request, api_id, after, filters, ndjson)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream, media_type=NDJSON if ndjson else "text/event-stream", headers=headers)


async def _follow(
    request: Request, api_id: str, after: int, filters: dict[str, Any], ndjson: bool
) -> AsyncIterator[bytes]:
    deployments = services(request).deployments
    quiet_since = time.monotonic()
    if not ndjson:
        yield b": following\n\n"
    while not STOPPING.is_set() and not await request.is_disconnected():
        entries, after = await anyio.to_thread.run_sync(lambda: deployments.logs_after(api_id, after, **filters))
        for entry in entries:
            data = orjson.dumps(entry)
            yield data + b"\n" if ndjson else b"id: %d\ndata: %s\n\n" % (entry["id"], data)
        if entries:
            quiet_since = time.monotonic()
        elif not ndjson and time.monotonic() - quiet_since > KEEPALIVE_S:
            quiet_since = time.monotonic()
            yield b": keep-alive\n\n"
        await asyncio.sleep(POLL_S)
