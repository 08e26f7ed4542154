"""The control plane, `/v1/...`: deploy, update, roll back and delete APIs, manage keys,
read logs and usage. Every route needs `Authorization: Bearer <admin token>`.

Creates and updates take JSON (`{"name", "source": "<module text>", "requirements",
"limits", "rate_limit", "quota", "private"}`) or multipart/form-data (a `source` file, .py or .zip,
an optional `requirements` file, and the other fields as text, `limits`/`rate_limit`/`quota` as
JSON). They answer when the build is done. A client that sends
`Accept: application/x-ndjson` gets the build log as it happens instead: one JSON object
per line, `{"log": "..."}`, then `{"status": <http status>, "body": <the answer>}`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import uuid
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import anyio
import orjson
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field, ValidationError
from starlette.responses import Response, StreamingResponse

from gateway.errors import ApiError, error_body, from_pydantic, json_response, validation_error
from gateway.http.bodies import media_type, read_body
from gateway.services import Services, services
from gateway.state import auth
from gateway.state.specs import MAX_VERSION, ApiSpec

log = logging.getLogger("wasmgate.gateway")

NDJSON = "application/x-ndjson"
Progress = Callable[[str], None]
Job = Callable[[Progress], dict[str, Any]]


async def require_admin(request: Request) -> None:
    auth.check_admin(request.headers, services(request).admin_digest)


router = APIRouter(prefix="/v1", dependencies=[Depends(require_admin)])


class RollbackSpec(BaseModel):
    version: int = Field(ge=1, le=MAX_VERSION)


# -- deploys ----------------------------------------------------------------------------------


@router.post("/apis", status_code=201)
async def create_api(request: Request) -> Response:
    svc = services(request)
    spec, source = await _read_deploy(request, svc)
    try:
        await anyio.to_thread.run_sync(svc.deployments.check_create, spec)
    except BaseException:
        _discard(source)
        raise
    return await _build_answer(
        request, svc, lambda progress: svc.deployments.create(spec, source, progress), 201, source
    )


@router.put("/apis/{ref}")
async def update_api(request: Request, ref: str) -> Response:
    svc = services(request)
    spec, source = await _read_deploy(request, svc)
    try:
        await anyio.to_thread.run_sync(svc.deployments.check_update, ref, spec)
    except BaseException:
        _discard(source)
        raise
    return await _build_answer(
        request, svc, lambda progress: svc.deployments.update(ref, spec, source, progress), 200, source
    )


@router.post("/apis/{ref}/rollback")
async def rollback_api(request: Request, ref: str) -> Response:
    try:
        spec = RollbackSpec.model_validate_json(await request.body())
    except ValidationError as error:
        raise from_pydantic(error) from None
    result = await anyio.to_thread.run_sync(services(request).deployments.rollback, ref, spec.version)
    return json_response(result)


@router.delete("/apis/{ref}", status_code=204)
def delete_api(request: Request, ref: str) -> Response:
    services(request).deployments.delete(ref)
    return Response(status_code=204)


# -- reading ----------------------------------------------------------------------------------


@router.get("/apis")
def list_apis(request: Request) -> Response:
    return json_response({"apis": services(request).deployments.list_apis()})


@router.get("/apis/{ref}")
def get_api(request: Request, ref: str) -> Response:
    return json_response(services(request).deployments.describe(ref))


@router.get("/apis/{ref}/logs")
def get_logs(request: Request, ref: str, limit: int = Query(50, ge=1, le=1000)) -> Response:
    return json_response({"logs": services(request).deployments.logs(ref, limit)})


@router.get("/apis/{ref}/usage")
def get_usage(request: Request, ref: str) -> Response:
    return json_response(services(request).deployments.usage(ref))


# -- keys -------------------------------------------------------------------------------------


@router.post("/apis/{ref}/keys", status_code=201)
def create_key(request: Request, ref: str) -> Response:
    return json_response(services(request).deployments.create_key(ref), 201)


@router.get("/apis/{ref}/keys")
def list_keys(request: Request, ref: str) -> Response:
    return json_response({"keys": services(request).deployments.list_keys(ref)})


@router.delete("/apis/{ref}/keys/{key_id}", status_code=204)
def revoke_key(request: Request, ref: str, key_id: str) -> Response:
    services(request).deployments.revoke_key(ref, key_id)
    return Response(status_code=204)


# -- helpers ----------------------------------------------------------------------------------


async def _read_deploy(request: Request, svc: Services) -> tuple[ApiSpec, Path]:
    """The deploy's spec, and its source written to a fresh directory (removed after the build)."""
    workdir = svc.settings.sources_dir / uuid.uuid4().hex
    limit = svc.settings.max_source_mb << 20
    try:
        body = await read_body(request, workdir / "upload", limit, limit + 1, what="deploy request")
        src = workdir / "src"
        src.mkdir(parents=True)
        if media_type(request) == "multipart/form-data":
            fields, source = await anyio.to_thread.run_sync(_from_multipart, body.form, body.files, src)
        elif media_type(request) in ("application/json", ""):
            fields, source = await anyio.to_thread.run_sync(_from_json, body.raw, src)
        else:
            raise validation_error("send the deploy as application/json or multipart/form-data")
        try:
            return ApiSpec.model_validate(fields), source
        except ValidationError as error:
            raise from_pydantic(error) from None
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise


def _from_json(raw: bytes | Path, src: Path) -> tuple[dict[str, Any], Path]:
    try:
        data = orjson.loads(raw if isinstance(raw, bytes) else raw.read_bytes())
    except orjson.JSONDecodeError as error:
        raise validation_error(f"the body is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise validation_error("the body must be a JSON object")
    source = data.pop("source", None)
    if not isinstance(source, str) or not source.strip():
        problem = "field required" if source is None or isinstance(source, str) else "must be a string"
        raise validation_error(
            f"source: the module's Python text is required ({problem})", [{"loc": ["source"], "msg": problem}]
        )
    path = src / "app.py"
    path.write_text(source)
    return data, path


def _from_multipart(form: list[tuple[str, str]], files: list, src: Path) -> tuple[dict[str, Any], Path]:
    fields: dict[str, Any] = {}
    for name, value in form:
        if name in ("limits", "rate_limit", "quota"):
            try:
                fields[name] = orjson.loads(value)
            except orjson.JSONDecodeError:
                raise validation_error(f"{name}: must be a JSON object") from None
        elif name == "requirements":
            fields[name] = value.splitlines()
        elif name == "private":
            fields[name] = value.strip().lower() in ("1", "true", "yes", "on")
        else:
            fields[name] = value
    source = None
    for upload in files:
        if upload.field == "source":
            source = src / _safe_filename(upload.filename)
            shutil.move(upload.path, source)
        elif upload.field == "requirements":
            fields["requirements"] = upload.path.read_text(errors="replace").splitlines()
    if source is None:
        raise validation_error(
            "source: upload the module (.py) or package (.zip) as the `source` file",
            [{"loc": ["source"], "msg": "field required"}],
        )
    return fields, source


def _safe_filename(filename: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(filename.replace("\\", "/")).name).lstrip(".")
    return name or "app.py"


def _discard(source: Path) -> None:
    shutil.rmtree(source.parent.parent, ignore_errors=True)


async def _build_answer(request: Request, svc: Services, job: Job, status: int, source: Path) -> Response:
    """Run a build job on the build threads; answer with its result or stream its log."""

    def run(progress: Progress) -> dict[str, Any]:
        try:
            return job(progress)
        finally:
            _discard(source)

    loop = asyncio.get_running_loop()
    if NDJSON not in request.headers.get("accept", ""):
        result = await loop.run_in_executor(svc.builds, run, lambda line: None)
        return json_response(result, status)
    return StreamingResponse(_stream(loop, svc, run, status), media_type=NDJSON)


async def _stream(
    loop: asyncio.AbstractEventLoop, svc: Services, run: Job, status: int
) -> AsyncIterator[bytes]:
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    future = loop.run_in_executor(
        svc.builds, run, lambda line: loop.call_soon_threadsafe(lines.put_nowait, line)
    )
    future.add_done_callback(lambda _: lines.put_nowait(None))
    while (line := await lines.get()) is not None:
        yield orjson.dumps({"log": line}) + b"\n"
    try:
        final = {"status": status, "body": future.result()}
    except ApiError as error:
        final = {"status": error.status, "body": error.body()}
    except Exception:
        log.exception("build failed unexpectedly")
        final = {"status": 500, "body": error_body("INTERNAL_ERROR", "the build failed unexpectedly")}
    yield orjson.dumps(final) + b"\n"
