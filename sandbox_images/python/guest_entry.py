"""Sandbox entry point: adapts the WIT world `api` to an author's `app`: a `wasmgate.App`, or
an ASGI app (FastAPI, Starlette) run unchanged through `wasmgate._asgi`.

componentize-py imports this module at build time, so everything imported here is part of
the pre-initialized snapshot. It runs only inside the guest.

The app is loaded at the end, by `_initialize`: at once when `wasmgate_target` names its
module (componentize-py pre-initializes this module and the app together), or, in a base
(`wasmgate_target.MODULE` is None: the builder's snapshot of everything but the app, shared
by the apps with the same dependencies), by the builder's `INIT_METHOD` request, after which
the builder snapshots the instance again (`builder/resnapshot.py`).
"""

import gc
import importlib
import importlib.util
import io
import json
import os
import sys
import time
import traceback

# Common stdlib modules, imported now so that handlers importing them lazily pay nothing.
# Anything else is found at run time in the read-only stdlib directory.
import base64, binascii, bisect, calendar, collections, copy, csv, dataclasses, datetime  # noqa: E401,F401
import decimal, difflib, enum, fractions, functools, hashlib, heapq, hmac, html, ipaddress  # noqa: E401,F401
import itertools, math, operator, pprint, random, secrets, statistics, string, struct  # noqa: E401,F401
import textwrap, typing, unicodedata, urllib.parse, uuid, zlib  # noqa: E401,F401

import wit_world
from wit_world import BodyEncoding
from wit_world.imports import host

import wasmgate
import wasmgate._asgi
import wasmgate._hashlib_gaps
import wasmgate._no_network
import wasmgate._snapshot
import wasmgate._ssl_stand_in
import wasmgate._threads
import wasmgate._waits

# Before the app is imported (it may `from hashlib import pbkdf2_hmac`, or import a library
# that imports `ssl` or looks a name up): thread pools run their work in place (the sandbox
# has one thread), hashlib.pbkdf2_hmac works without OpenSSL, `ssl` imports (a stand-in
# whose every use raises) and name lookups fail in Python (there is no network).
wasmgate._threads.install()
wasmgate._hashlib_gaps.install()
wasmgate._ssl_stand_in.install()
wasmgate._no_network.install()

# The app's folder (the first entry of the python path) is the working directory, as when it is
# served from there (`uvicorn app:app`): relative paths such as `StaticFiles(directory="static")`,
# templates and data files resolve inside it, at import and in handlers (read-only).
os.chdir("/0")

# Unbuffered text streams on WASI hand at most 8 KiB per write to the host and drop the
# rest; buffered writers loop until everything is delivered.
sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)), line_buffering=True)
sys.stderr = io.TextIOWrapper(io.BufferedWriter(io.FileIO(2, "w", closefd=False)), line_buffering=True)


def _sleep(seconds: float) -> None:
    """time.sleep through the host, which cuts it short at the deadline."""
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    host.sleep(int(seconds * 1_000_000_000))


time.sleep = _sleep
# select/poll on nothing and asyncio sleep through the host instead of subscribing to the
# clock (which the host refuses); asyncio's modules become part of the snapshot.
wasmgate._waits.install()


def _load_app() -> typing.Any:
    import wasmgate_target  # imports the app's module

    module = sys.modules[wasmgate_target.MODULE]
    app = getattr(module, "app", None)
    if not isinstance(app, wasmgate.App) and not wasmgate._asgi.is_asgi_app(app):
        raise SystemExit(
            f"WASMGATE_BUILD_ERROR: module {wasmgate_target.MODULE!r} must define `app = wasmgate.App()`"
            " or `app = FastAPI()`"
            + ("" if app is None else f" (found `app` of type {type(app).__name__})")
        )
    return app


APP: typing.Any = None
IS_ASGI = False
WARM_UP_APP = None
DESCRIPTION = ""
# Set in an instance of a base's snapshot taken again: the builder's call made the `random`
# module's seed part of it, so each instance seeds it afresh before the app's first request.
_RESEED = False


def _body_reader(req: wit_world.Request) -> typing.Callable[[], bytes]:
    if req.body_file is not None:
        path = req.body_file

        def read_file() -> bytes:
            with open(path, "rb") as body:
                return body.read()

        return read_file
    text = req.body
    return lambda: text.encode("latin-1")


def _to_request(req: wit_world.Request, client: tuple[str, int] | None = None) -> wasmgate.Request:
    files = [
        wasmgate.UploadFile(
            filename=u.filename, content_type=u.content_type, size=u.size, path=u.path, field=u.field
        )
        for u in req.files
    ]
    return wasmgate.Request(
        method=req.method,
        path=req.path,
        query=req.query,
        headers=req.headers,
        form=req.form,
        files=files,
        body_reader=_body_reader(req),
        client=client,
    )


def _to_response(status: int, headers: typing.Iterable[tuple[str, str]], body: bytes) -> wit_world.Response:
    try:
        text, encoding = body.decode("utf-8"), BodyEncoding.UTF8
    except UnicodeDecodeError:
        text, encoding = body.decode("latin-1"), BodyEncoding.LATIN1
    return wit_world.Response(status, list(headers), text, encoding, None)


def _sdk_response(response: wasmgate.Response) -> wit_world.Response:
    return _to_response(response.status_code, response.headers, response.body)


def _crash_response(tb: str) -> wit_world.Response:
    body = json.dumps({"error": {"code": "SANDBOX_ERROR", "message": "the API raised an exception", "details": {}}})
    return wit_world.Response(500, [("content-type", "application/json")], body, BodyEncoding.UTF8, tb)


# What `warm` runs through the request path: a method no route declares (App.warm checks),
# so the router answers it itself and no handler is ever called.
_WARM_REQUEST = wit_world.Request(
    method=wasmgate.WARM_METHOD,
    path="/",
    query=[("q", "1")],
    headers=[("content-type", "application/json"), ("accept", "*/*")],
    form=[],
    files=[],
    body_size=2,
    body="{}",
    body_file=None,
)


# The SDK's own app for `warm`: a request through it runs the success path the author's app
# is never sent before its request (matching a route, binding path, query and JSON body
# parameters, calling a handler, a JSON response), with no author code. The same SDK code,
# run and specialised here, then serves the author's routes (measured with the JSON echo:
# a fresh instance burned 365k fuel where a reused one burns 303k, the handler's path being
# CPython's first run of it in that instance).
_WARM_APP = wasmgate.App()


@_WARM_APP.post("/warm/{item}")
def _warm_echo(item: str, body: dict, q: str = "") -> dict:
    return {"item": item, "q": q, **body}


_WARM_ECHO = wit_world.Request(
    method="POST",
    path="/warm/1",
    query=[("q", "x")],
    headers=[("content-type", "application/json"), ("accept", "*/*")],
    form=[],
    files=[],
    body_size=23,
    body='{"a": 1, "b": [1, 2.5]}',
    body_file=None,
)


def _call_asgi(req: wit_world.Request, client: tuple[str, int] | None, mount: str) -> wit_world.Response:
    files = [wasmgate._asgi.Upload(u.field, u.filename, u.content_type, u.path, u.size) for u in req.files]
    answer = wasmgate._asgi.call(
        APP, req.method, req.path, req.query, req.headers, _body_reader(req), req.form, files, client, mount
    )
    return _to_response(*answer)


# The builder's request to a base: load the app (a method no route takes; a gateway never
# forwards it, and an instance that has its app answers it 405).
INIT_METHOD = "WASMGATE-INIT"

# The host's headers, last in the request: the API's variables and secrets, and before them
# how the caller reached the API (runtime.marshalling.ENV_HEADER and CONTEXT_HEADER).
_ENV_HEADER = "x-wasmgate-env"
_CONTEXT_HEADER = "x-wasmgate-context"


def _take_host_headers(req: wit_world.Request) -> tuple[tuple[str, int] | None, str]:
    """Take the host's headers off the request: the API's configured environment goes into
    os.environ; the caller's (host, port) and the API's mount are returned (None and "" when
    the host sent neither: `wasmgate invoke-local`)."""
    if req.headers and req.headers[-1][0] == _ENV_HEADER:
        os.environ.update(json.loads(req.headers.pop()[1]))
    if req.headers and req.headers[-1][0] == _CONTEXT_HEADER:
        mount, port, host = req.headers.pop()[1].split(" ", 2)  # runtime.marshalling.context_header
        return (None if host == "-" else (host, int(port))), mount
    return None, ""


class WitWorld(wit_world.WitWorld):
    def handle(self, req: wit_world.Request) -> wit_world.Response:
        try:
            if _RESEED:
                _reseed()
            client, mount = _take_host_headers(req)
            if req.method == INIT_METHOD:
                return _initialize_base()
            if req.method == wasmgate.WARM_METHOD:  # the pool's warm-up (a gateway never sends it)
                return _warm(req, client)
            if IS_ASGI:
                return _call_asgi(req, client, mount)
            return _sdk_response(APP.dispatch(_to_request(req, client)))
        except BaseException:  # the host classifies it (MemoryError, SystemExit, ...)
            return _crash_response(traceback.format_exc())
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass

    def describe(self) -> str:
        return DESCRIPTION

    def ping(self) -> None:
        pass

    def warm(self) -> None:
        _take_host_headers(wit_world.Request(  # taking the caller's context off, as every request does
            "GET", "/", [], [("accept", "*/*"), (_CONTEXT_HEADER, "/run/warm 1 127.0.0.1")], [], [], 0, "", None
        ))
        _warm(_WARM_REQUEST, None)


def _warm(req: wit_world.Request, client: tuple[str, int] | None) -> wit_world.Response:
    """The warm-up, at build time through `warm` and in the pool through `handle` (which then
    finds the bindings' conversions of a request and a response warm too: a fresh SDK echo's
    call took ~10% less time than after `warm` alone, for 1% less fuel): `req`, a
    `WARM_METHOD` request, through the SDK's router, which no route takes, and a JSON request
    through an app of the SDK's own; for an ASGI app, requests through the framework's code
    in an app of the SDK's own. No author code runs."""
    if not IS_ASGI:
        _sdk_response(_WARM_APP.dispatch(_to_request(_WARM_ECHO)))
        return _sdk_response(APP.warm(_to_request(req, client)))
    if WARM_UP_APP is not None:
        wasmgate._asgi.warm(WARM_UP_APP)
    return _to_response(204, [], b"")


def _initialize() -> None:
    """Load the app and take it into the snapshot: everything the build does with the app."""
    global APP, IS_ASGI, WARM_UP_APP, DESCRIPTION
    APP = _load_app()
    IS_ASGI = not isinstance(APP, wasmgate.App)
    if IS_ASGI:
        wasmgate._asgi.install()
        try:
            wasmgate._asgi.start(APP)  # the lifespan's startup, once: its effects are in the snapshot
        except wasmgate._asgi.StartupFailed as failed:
            text = str(failed).strip()  # Starlette sends the startup's traceback
            print(text, file=sys.stderr)
            raise SystemExit(f"WASMGATE_BUILD_ERROR: the app's lifespan startup failed: {text.splitlines()[-1]}") from None
        wasmgate._asgi.prepare(APP)
        WARM_UP_APP = wasmgate._asgi.warm_up_app()
    DESCRIPTION = json.dumps(wasmgate._asgi.describe(APP) if IS_ASGI else APP.describe())  # now, in the snapshot

    # The warm-up path, run twice now, at build time: the snapshot then holds its bytecode
    # specialised (CPython specialises an instruction on its second run) and its caches filled,
    # so a fresh instance's first request does less start-up work (echo: 363k fuel, was 429k; a
    # reused instance 299k). No author code runs (see `warm`).
    for _ in range(2):
        WitWorld().warm()
    if IS_ASGI:
        wasmgate._asgi.prime(APP)  # each JSON-body route's handler once, refusing a body no author code sees

    # What the snapshot holds lives as long as the instance, so the collector is done with it here:
    # one collection, then gc.freeze() (the collector never scans those objects again). Without
    # it, the allocations counted since the last collection carried over into every instance, and
    # the first request crossing the threshold paid for a pass over the whole heap (the SDK echo
    # took 1.57 M fuel instead of 0.32 M once the build's own allocations moved that point).
    gc.collect()
    # ... and lists the snapshot's objects for the builder to make immortal, so that requests do
    # not write their reference counts (`wasmgate._snapshot`, `builder/immortal_refcounts.py`).
    wasmgate._snapshot.write_objects(os.path.join(os.path.dirname(__file__), wasmgate._snapshot.LISTING))
    gc.freeze()


def _initialize_base() -> wit_world.Response:
    """The builder's `INIT_METHOD` request to a base: the app's module, now named in
    `wasmgate_target` on disk, loaded into this instance (then snapshotted by the builder)."""
    global _RESEED
    if APP is not None:  # not a base: nothing to load (a gateway never forwards this method)
        return _to_response(405, [], b"")
    import wasmgate_target

    importlib.invalidate_caches()  # the app's folder is not the one the base was made with
    importlib.reload(wasmgate_target)
    _initialize()
    _RESEED = True
    return _to_response(204, [], b"")


def _reseed() -> None:
    global _RESEED
    _RESEED = False
    random.seed()


import wasmgate_target  # noqa: E402  (the app's module name: None in a base)

if wasmgate_target.MODULE is not None:
    _initialize()
elif importlib.util.find_spec("fastapi") is not None:  # a base with the FastAPI layer: FastAPI in it too
    import fastapi  # noqa: F401
