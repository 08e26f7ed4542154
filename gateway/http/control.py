"""The control plane, `/v1/...`: deploy, update, patch, pause, roll back and delete APIs,
manage keys, read sources, logs (or follow them live) and usage. Every route needs
`Authorization: Bearer <token>`: the admin token manages every API; an account's token only
its own, and another account's API is 404 to it (gateway.state.accounts).

Creates and updates take JSON (`{"name", "source": "<module text>", "requirements",
"limits", "rate_limit", "quota", "private", "variables", "secrets", "auth", "cors"}`) or
multipart/form-data (a `source` file, .py or .zip, an optional `requirements` file, and the
other fields as text, `limits`/`rate_limit`/`quota`/`variables`/`secrets`/`cors` as JSON).
They answer when the build is done. A client that sends `Accept: application/x-ndjson` gets
the build log as it happens instead: one JSON object per line, `{"log": "..."}`, then `{"status": <http status>, "body": <the answer>}`.
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
from fastapi import APIRouter, Depends, Request, Security
from fastapi import Path as FastApiPath
from pydantic import BaseModel, Field, ValidationError
from starlette.responses import Response, StreamingResponse

from gateway.errors import ApiError, error_body, from_pydantic, json_response, validation_error
from gateway.http.bodies import media_type, read_body
from gateway.http.schemas import (
    AUTH_ERRORS,
    BEARER_TOKEN,
    ApiCreated,
    ApiDescription,
    ApiList,
    CreateJson,
    DeployJson,
    KeyCreated,
    KeyList,
    SOURCE_ANSWER,
    Usage,
    build_answer,
    deploy_body,
    errors,
    json_body,
)
from gateway.services import Services, services
from gateway.state.accounts import Caller
from gateway.state.specs import MAX_VERSION, ApiSpec, ConfigSpec

log = logging.getLogger("wasmgate.gateway")

NDJSON = "application/x-ndjson"
Progress = Callable[[str], None]
Job = Callable[[Progress], dict[str, Any]]


async def identify(request: Request) -> None:
    """Who calls (request.state.caller): the admin or an account; 401/403 for anyone else."""
    request.state.caller = await anyio.to_thread.run_sync(services(request).accounts.identify, request.headers)


def caller(request: Request) -> Caller:
    return request.state.caller


def _owned(request: Request, ref: str) -> str:
    """The id of API `ref` if the caller may manage it (blocking: a database read); else 404."""
    return services(request).deployments.check_access(ref, caller(request)).id


# Security(BEARER_TOKEN) only documents the header (gateway.http.schemas); `identify` checks it.
router = APIRouter(
    prefix="/v1", dependencies=[Depends(identify), Security(BEARER_TOKEN)], responses=AUTH_ERRORS, tags=["APIs"]
)


class RollbackSpec(BaseModel):
    version: int = Field(ge=1, le=MAX_VERSION)


# -- deploys ----------------------------------------------------------------------------------


@router.post(
    "/apis", status_code=201, response_model=ApiCreated, openapi_extra=deploy_body(CreateJson),
    responses={**build_answer(201, ApiCreated), **errors(409, 413, 422)},
)
async def create_api(request: Request) -> Response:
    svc = services(request)
    spec, source = await _read_deploy(request, svc)
    try:
        await anyio.to_thread.run_sync(svc.deployments.check_create, spec, caller(request))
    except BaseException:
        _discard(source)
        raise
    return await _build_answer(
        request, svc, lambda progress: svc.deployments.create(spec, source, progress, caller(request)), 201, source
    )


@router.put(
    "/apis/{ref}", response_model=ApiDescription, openapi_extra=deploy_body(DeployJson),
    responses={**build_answer(200, ApiDescription), **errors(404, 409, 413, 422)},
)
async def update_api(request: Request, ref: str) -> Response:
    svc = services(request)
    ref = await anyio.to_thread.run_sync(_owned, request, ref)
    spec, source = await _read_deploy(request, svc)
    try:
        await anyio.to_thread.run_sync(svc.deployments.check_update, ref, spec)
    except BaseException:
        _discard(source)
        raise
    return await _build_answer(
        request, svc, lambda progress: svc.deployments.update(ref, spec, source, progress), 200, source
    )


@router.post(
    "/apis/{ref}/rollback", response_model=ApiDescription, openapi_extra=json_body(RollbackSpec),
    responses=errors(404, 409, 422),
)
async def rollback_api(request: Request, ref: str) -> Response:
    ref = await anyio.to_thread.run_sync(_owned, request, ref)
    try:
        spec = RollbackSpec.model_validate_json(await request.body())
    except ValidationError as error:
        raise from_pydantic(error) from None
    result = await anyio.to_thread.run_sync(services(request).deployments.rollback, ref, spec.version)
    return json_response(result)


@router.patch(
    "/apis/{ref}", response_model=ApiDescription, openapi_extra=json_body(ConfigSpec), responses=errors(404, 422)
)
async def patch_api(request: Request, ref: str) -> Response:
    """Change limits, rate limit, quota, privacy, variables, secrets, auth or CORS: a new
    version reusing the active one's bundle (no rebuild)."""
    ref = await anyio.to_thread.run_sync(_owned, request, ref)
    try:
        spec = ConfigSpec.model_validate_json(await request.body() or b"{}")
    except ValidationError as error:
        raise from_pydantic(error) from None
    return json_response(await anyio.to_thread.run_sync(services(request).deployments.patch, ref, spec))


@router.post("/apis/{ref}/pause", response_model=ApiDescription, responses=errors(404, 422))
def pause_api(request: Request, ref: str) -> Response:
    """Calls answer 503 API_PAUSED without running; keys, versions and logs stay."""
    return json_response(services(request).deployments.set_paused(_owned(request, ref), True))


@router.post("/apis/{ref}/resume", response_model=ApiDescription, responses=errors(404, 422))
def resume_api(request: Request, ref: str) -> Response:
    return json_response(services(request).deployments.set_paused(_owned(request, ref), False))


@router.delete("/apis/{ref}", status_code=204, responses=errors(404, 422))
def delete_api(request: Request, ref: str) -> Response:
    services(request).deployments.delete(_owned(request, ref))
    return Response(status_code=204)


# -- reading ----------------------------------------------------------------------------------


@router.get("/apis", response_model=ApiList)
def list_apis(request: Request) -> Response:
    return json_response({"apis": services(request).deployments.list_apis(caller(request))})


@router.get("/apis/{ref}", response_model=ApiDescription, responses=errors(404, 422))
def get_api(request: Request, ref: str) -> Response:
    return json_response(services(request).deployments.describe(_owned(request, ref)))


@router.get(
    "/apis/{ref}/versions/{version}/source",
    response_class=Response,  # documents no JSON: the route answers the file itself
    responses={200: SOURCE_ANSWER, **errors(404, 422)},
)
def get_source(request: Request, ref: str, version: int = FastApiPath(ge=1, le=MAX_VERSION)) -> Response:
    """A version's source as deployed: the module (.py) or the package (.zip)."""
    name, data = services(request).deployments.source(_owned(request, ref), version)
    media = "application/zip" if name.endswith(".zip") else "text/x-python; charset=utf-8"
    return Response(data, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/apis/{ref}/usage", response_model=Usage, responses=errors(404, 422))
def get_usage(request: Request, ref: str) -> Response:
    return json_response(services(request).deployments.usage(_owned(request, ref)))


# -- keys -------------------------------------------------------------------------------------


@router.post("/apis/{ref}/keys", status_code=201, response_model=KeyCreated, responses=errors(404, 422))
def create_key(request: Request, ref: str) -> Response:
    return json_response(services(request).deployments.create_key(_owned(request, ref)), 201)


@router.get("/apis/{ref}/keys", response_model=KeyList, responses=errors(404, 422))
def list_keys(request: Request, ref: str) -> Response:
    return json_response({"keys": services(request).deployments.list_keys(_owned(request, ref))})


@router.delete("/apis/{ref}/keys/{key_id}", status_code=204, responses=errors(404, 422))
def revoke_key(request: Request, ref: str, key_id: str) -> Response:
    services(request).deployments.revoke_key(_owned(request, ref), key_id)
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
        if name in ("limits", "rate_limit", "quota", "variables", "secrets", "cors"):
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
            svc.build_queue.leave()
            _discard(source)

    loop = asyncio.get_running_loop()
    if NDJSON not in request.headers.get("accept", ""):
        svc.build_queue.enter()
        result = await loop.run_in_executor(svc.builds, run, lambda line: None)
        return json_response(result, status)
    return StreamingResponse(_stream(loop, svc, run, status), media_type=NDJSON)


async def _stream(
    loop: asyncio.AbstractEventLoop, svc: Services, run: Job, status: int
) -> AsyncIterator[bytes]:
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    ahead = svc.build_queue.enter()
    if ahead:
        lines.put_nowait(f"queued: waiting for a build slot ({ahead} build(s) ahead)")
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
