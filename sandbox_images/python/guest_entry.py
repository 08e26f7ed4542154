"""Sandbox entry point: adapts the WIT world `api` to an author's `wasmgate.App`.

componentize-py imports this module at build time, so everything imported here is part of
the pre-initialized snapshot. It runs only inside the guest.
"""

import io
import json
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
import wasmgate_target

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


def _load_app() -> wasmgate.App:
    module = sys.modules[wasmgate_target.MODULE]
    app = getattr(module, "app", None)
    if not isinstance(app, wasmgate.App):
        raise SystemExit(
            f"WASMGATE_NO_APP: module {wasmgate_target.MODULE!r} must define `app = wasmgate.App()`"
            + ("" if app is None else f" (found `app` of type {type(app).__name__})")
        )
    return app


APP = _load_app()
APP.describe()  # resolves every route's annotations now, inside the snapshot


def _body_reader(req: wit_world.Request) -> typing.Callable[[], bytes]:
    if req.body_file is not None:
        path = req.body_file

        def read_file() -> bytes:
            with open(path, "rb") as body:
                return body.read()

        return read_file
    text = req.body
    return lambda: text.encode("latin-1")


def _to_request(req: wit_world.Request) -> wasmgate.Request:
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
    )


def _to_response(response: wasmgate.Response, error: typing.Optional[str] = None) -> wit_world.Response:
    body = response.body
    try:
        text, encoding = body.decode("utf-8"), BodyEncoding.UTF8
    except UnicodeDecodeError:
        text, encoding = body.decode("latin-1"), BodyEncoding.LATIN1
    return wit_world.Response(response.status_code, list(response.headers), text, encoding, error)


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


class WitWorld(wit_world.WitWorld):
    def handle(self, req: wit_world.Request) -> wit_world.Response:
        try:
            return _to_response(APP.dispatch(_to_request(req)))
        except BaseException:  # the host classifies it (MemoryError, SystemExit, ...)
            return _crash_response(traceback.format_exc())
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass

    def describe(self) -> str:
        return json.dumps(APP.describe())

    def ping(self) -> None:
        pass

    def warm(self) -> None:
        _to_response(APP.warm(_to_request(_WARM_REQUEST)))
