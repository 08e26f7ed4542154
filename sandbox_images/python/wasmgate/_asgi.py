"""Runs an ASGI app (a FastAPI or Starlette `app`, unchanged) on one sandbox request.

The request arrives already read by the host: query pairs, headers, the raw body (small ones
by value, large ones as a file) and, for multipart, the fields and files the host streamed to
disk. The app gets a normal ASGI `http` scope; a multipart form reaches Starlette's
`Request.form()` as the host parsed it (each file an `UploadFile` over its file on disk), so
uploads are never copied through the body or parsed twice. The response is collected whole.

What the sandbox lacks is bridged here, once, at build time (`ssl`, which anyio's asyncio
backend imports, is a stand-in from `wasmgate._ssl_stand_in`):
- threads: `anyio.to_thread.run_sync` (behind `run_in_threadpool`, sync handlers and
  dependencies, `UploadFile.read`) calls the function in place; the sandbox has one thread.
- an event loop: requests run on a `SandboxEventLoop` (timers and tasks, no sockets), so
  `asyncio.sleep`, `gather`, `wait_for` and `create_task` work inside the deadline.

A server starts an app before its first request: `start` runs the app's lifespan startup
(FastAPI's `lifespan=` context manager, `on_event("startup")` handlers) at build time, once,
so its effects (`app.state`, module globals, the state a lifespan yields, which every request
gets a shallow copy of in `request.state`) are in the snapshot every instance starts from.
Its shutdown never runs: an instance ends with its request, as a process that is stopped.

What the framework does lazily on an app's first request is done at build time instead
(`prepare`), as a server does it at start-up: the middleware stack is built, and the source
location of each endpoint (which FastAPI keeps for its error messages, reading and
tokenising the module's file) is found, and what each route's parameter declarations say is
worked out. Each route taking a JSON body is sent a body that is not JSON (`prime`), which
FastAPI refuses before any of the author's code could run. A fresh instance's first request
would also pay for CPython warming up FastAPI's and pydantic's code (specialising it,
filling caches). `warm()` pays that before the request arrives, by sending synthetic requests
through a small FastAPI app of this module's own (`warm_up_app()`, made at build time): the
same framework code runs, and no code of the author's, not even middleware, is reached.

Per request, what costs work and changes no answer is skipped: FastAPI's telemetry lookups
before any telemetry is attached, its check whether telemetry is on when nothing configures
it, the email package's policy layers when FastAPI reads a content type, re-encoding a
returned value that is plain JSON already, working out again
what a parameter's declaration says or what kind of callable a dependency is, trying
FastAPI's documentation routes before an app's own routes none of which can match their
paths, quoting a path that needs none, tracking async generators on a loop never shut down,
and a turn of the event loop for a request that never waits (each shortcut says why it
gives the same answer).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import re
import traceback
from typing import Any, Callable, NamedTuple
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from wasmgate._waits import WaitsForever


class Upload(NamedTuple):
    field: str
    filename: str
    content_type: str
    path: str
    size: int


class Answer(NamedTuple):
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def is_asgi_app(app: Any) -> bool:
    """An ASGI application object: FastAPI, Starlette, or anything with `async __call__(scope,
    receive, send)`."""
    call = getattr(type(app), "__call__", None)
    return call is not None and inspect.iscoroutinefunction(call)


def install() -> None:
    """Bridge threads and pre-parsed forms (idempotent); imports Starlette and anyio's
    asyncio backend now, so they are part of the snapshot. An ASGI app written without either
    (a class with `async __call__`) needs none of it."""
    try:
        import anyio  # noqa: F401
        import starlette  # noqa: F401
    except ImportError:
        return
    import anyio._backends._asyncio  # noqa: F401  (imported lazily on the first request otherwise)
    import anyio._core._fileio  # noqa: F401  (FileResponse and StaticFiles read files through it)
    import anyio.to_thread
    from starlette.requests import Request

    if getattr(anyio.to_thread.run_sync, "_wasmgate", False):
        return

    async def run_sync(func: Callable[..., Any], *args: Any, **_options: Any) -> Any:
        return func(*args)

    run_sync._wasmgate = True  # type: ignore[attr-defined]
    anyio.to_thread.run_sync = run_sync
    original_get_form = Request._get_form

    async def _get_form(self: Request, **options: Any) -> Any:
        prepared = self.scope.get("wasmgate.form")
        if self._form is None and prepared is not None:
            self._form = prepared()
        return await original_get_form(self, **options)

    Request._get_form = _get_form
    _look_up_telemetry_only_when_attached()
    _answer_unconfigured_telemetry_directly()
    _test_environ_keys_without_raising()
    _read_content_types_without_the_email_package()
    _encode_plain_json_as_it_is()
    _answer_per_parameter_once()


def _look_up_telemetry_only_when_attached() -> None:
    """FastAPI looks up its per-request telemetry record in the OpenTelemetry context four
    times a request or more (~10% of an echo's fuel, through five layers of calls). The record
    is only ever attached by `NativeTelemetry.__call__`, under a key private to FastAPI, so
    until that has run in this instance every lookup without an explicit context finds nothing:
    answer None at once until then (exactly what the lookup would answer)."""
    try:
        from fastapi.telemetry import _api, _asgi
    except ImportError:  # not FastAPI, or a release without native telemetry
        return
    look_up = _api._get_request_telemetry
    if getattr(look_up, "_wasmgate", False):
        return
    attached = [False]
    enter = _asgi.NativeTelemetry.__call__

    async def __call__(self: Any, **kwargs: Any) -> None:
        attached[0] = True
        await enter(self, **kwargs)

    def _get_request_telemetry(context: Any = None) -> Any:
        if context is None and not attached[0]:
            return None
        return look_up(context)

    _get_request_telemetry._wasmgate = True  # type: ignore[attr-defined]
    _asgi.NativeTelemetry.__call__ = __call__
    _api._get_request_telemetry = _get_request_telemetry


def _answer_unconfigured_telemetry_directly() -> None:
    """FastAPI asks on every request whether its telemetry is on (`NativeTelemetry.enabled`):
    for each of tracing, metrics and logs, whether the app's config names a provider or
    OpenTelemetry's global one is configured, which OpenTelemetry answers by looking the
    provider's variable up in the environment and FastAPI by the provider's class. When the
    config names none, no global provider is set and none of the three variables is in the
    environment, each lookup returns OpenTelemetry's deferred proxy and the answer is False
    whatever the config's switches say: answered so at once (with the content type below,
    a FastAPI echo 1.024 M -> 0.998 M fuel). Anything else (a provider set in code, at
    startup or in a handler; a variable the API sets) goes to FastAPI's own check, so the
    answer is the same every time."""
    try:
        from fastapi.telemetry import _api, _asgi
        from opentelemetry import trace
        from opentelemetry._logs import _internal as logs
        from opentelemetry.metrics import _internal as metrics
    except ImportError:  # not FastAPI, or a release without native telemetry
        return
    check = _asgi.NativeTelemetry.enabled
    if getattr(check, "_wasmgate", False):
        return
    # (module, its provider's variable, its global provider, its deferred proxy), as read below
    providers = ((trace, "OTEL_PYTHON_TRACER_PROVIDER", "_TRACER_PROVIDER", "_PROXY_TRACER_PROVIDER"),
                 (metrics, "OTEL_PYTHON_METER_PROVIDER", "_METER_PROVIDER", "_PROXY_METER_PROVIDER"),
                 (logs, "_OTEL_PYTHON_LOGGER_PROVIDER", "_LOGGER_PROVIDER", "_PROXY_LOGGER_PROVIDER"))
    if not all(hasattr(module, variable) and hasattr(module, current)
               and _api._unconfigured(getattr(module, proxy, None))
               for module, variable, current, proxy in providers):
        return  # a release that looks its providers up otherwise: FastAPI's check, as it is
    tracer_variable, meter_variable, logger_variable = (getattr(module, name) for module, name, _, _ in providers)
    environ = os.environ

    def enabled(self: Any) -> bool:
        config = self.config
        if (config["tracer_provider"] is None and config["meter_provider"] is None
                and config["logger_provider"] is None and trace._TRACER_PROVIDER is None
                and metrics._METER_PROVIDER is None and logs._LOGGER_PROVIDER is None
                and tracer_variable not in environ and meter_variable not in environ
                and logger_variable not in environ):
            return False
        return check(self)

    enabled._wasmgate = True  # type: ignore[attr-defined]
    enabled.__wrapped__ = check  # type: ignore[attr-defined]
    _asgi.NativeTelemetry.enabled = enabled


def _test_environ_keys_without_raising() -> None:
    """`key in os.environ` as `Mapping.__contains__` does it, without raising and catching a
    KeyError: FastAPI's telemetry check asks whether each provider's variable is set on every
    request (same answers, TypeError for a key that is not a str included)."""

    def __contains__(self: Any, key: Any) -> bool:
        return self.encodekey(key) in self._data

    type(os.environ).__contains__ = __contains__


class _ContentTypeMessage:
    """`email.message.Message` as FastAPI's request handler uses it to tell a JSON body: one
    `content-type` header set, then its main type and subtype read (~8% of a FastAPI echo's
    fuel through the email package's policy layers). The answers are the email package's
    own rules, applied directly: the value up to the first ";", stripped and lowercased, is
    the type if it holds exactly one "/", and is "text/plain" otherwise. The value is a
    header decoded from latin-1, so it never holds the surrogates that would make the email
    package wrap it. Anything else asked of it (FastAPI's `Accept` parsing reads parameters)
    is answered by a real `Message` holding the same headers."""

    def __init__(self) -> None:
        self._headers: list[tuple[str, Any]] = []
        self._real: Any = None
        self._parts: tuple[str, str] | None = None  # (main type, subtype), once worked out

    def __setitem__(self, name: str, value: Any) -> None:
        if self._real is not None:
            self._real[name] = value
        self._headers.append((name, value))
        self._parts = None

    def _content_type(self) -> tuple[str, str] | None:
        """(main type, subtype) by the email package's rules, or None where the real
        `Message` answers (more than one header, another header, a value that is not ASCII)."""
        if self._parts is None and self._real is None and len(self._headers) == 1:
            name, value = self._headers[0]
            if type(value) is str and name.lower() == "content-type" and value.isascii():
                ctype = value.partition(";")[0].strip().lower()
                main, _, sub = ctype.partition("/") if ctype.count("/") == 1 else ("text", "/", "plain")
                self._parts = (main, sub)
        return self._parts if self._real is None else None

    def get_content_maintype(self) -> str:
        parts = self._content_type()
        return self._message().get_content_maintype() if parts is None else parts[0]

    def get_content_subtype(self) -> str:
        parts = self._content_type()
        return self._message().get_content_subtype() if parts is None else parts[1]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._message(), name)

    def _message(self) -> Any:
        """The real `Message`, holding the same headers, made when first needed."""
        if self._real is None:
            import email.message

            self._real = email.message.Message()
            for header, value in self._headers:
                self._real[header] = value
        return self._real


def _read_content_types_without_the_email_package() -> None:
    """FastAPI's routing module reads each JSON request's content type through `email.message`:
    it gets `_ContentTypeMessage` instead (the same answers), that module alone."""
    import types

    try:
        from fastapi import routing
    except ImportError:
        return
    email = getattr(routing, "email", None)
    if not isinstance(email, types.ModuleType) or not hasattr(getattr(email, "message", None), "Message"):
        return  # a release that reads it otherwise: nothing to do
    routing.email = types.SimpleNamespace(message=types.SimpleNamespace(Message=_ContentTypeMessage))


_JSON_LEAVES = frozenset({str, int, float, bool, type(None)})


def _plain_json(value: Any) -> bool:
    """Whether `value` is made of nothing but dicts with str keys (none starting with "_sa"),
    lists, str, int, float, bool and None, each of exactly that type."""
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or key.startswith("_sa"):
                return False
            if type(item) not in _JSON_LEAVES and not _plain_json(item):
                return False
        return True
    if kind is list:
        return all(type(item) in _JSON_LEAVES or _plain_json(item) for item in value)
    return kind in _JSON_LEAVES


def plain_json_first(encode: Callable[..., Any]) -> Callable[..., Any]:
    """`encode` (FastAPI's `jsonable_encoder`), answering at once, with the value itself, for a
    value `_plain_json` accepts and FastAPI's default options: the encoder would return an
    equal copy (it rebuilds each dict and list, keeps every key, a str, int, float, bool or None
    as it is, and skips only keys starting with "_sa"), which the response then renders to the
    same bytes. Anything else, and a value nested too deep to look at, goes to `encode`."""

    def jsonable_encoder(obj: Any, *args: Any, **kwargs: Any) -> Any:
        if not args and not kwargs:
            try:
                if _plain_json(obj):
                    return obj
            except RecursionError:
                pass
        return encode(obj, *args, **kwargs)

    jsonable_encoder._wasmgate = True  # type: ignore[attr-defined]
    return jsonable_encoder


def _encode_plain_json_as_it_is() -> None:
    """FastAPI turns an endpoint's return value into JSON-ready data with `jsonable_encoder`
    when the route has no response model (a handler returning a dict): a recursive call per
    dict, key and value with nine options each, ~7% of such a request. Its routing module gets
    `plain_json_first(jsonable_encoder)` instead: the same answers (property-tested against
    it), that module alone."""
    try:
        from fastapi import routing
    except ImportError:
        return
    encode = getattr(routing, "jsonable_encoder", None)
    if encode is None or getattr(encode, "_wasmgate", False):
        return
    routing.jsonable_encoder = plain_json_first(encode)


# FastAPI's per-request questions whose answer depends on a parameter's declaration alone.
_PER_PARAMETER = ("field_annotation_is_sequence", "_get_param_model", "_get_param_aliases")
# ... and on an endpoint's or a dependency's callable alone (defined in its dependencies'
# models module, imported by name into the two others that ask them).
_PER_CALLABLE = ("_is_gen_callable", "_is_async_gen_callable", "_is_coroutine_callable")
_ASKING_PER_CALLABLE = ("fastapi.dependencies.models", "fastapi.dependencies.utils", "fastapi.routing")


def once_per_object(function: Callable[..., Any]) -> Callable[..., Any]:
    """`function(obj, **options)`, computed once for each object (kept alive with its answer,
    so its id is not reused) and set of options; a call it raises from is not remembered."""
    answers: dict[tuple, tuple[Any, Any]] = {}

    def once(obj: Any, *args: Any, **options: Any) -> Any:
        if args:
            return function(obj, *args, **options)
        key = (id(obj), *options.items()) if options else id(obj)
        known = answers.get(key)
        if known is not None and known[0] is obj:
            return known[1]
        answer = function(obj, **options)
        answers[key] = (obj, answer)
        return answer

    once._wasmgate = True  # type: ignore[attr-defined]
    once.__wrapped__ = function  # type: ignore[attr-defined]
    return once


def _answer_per_parameter_once() -> None:
    """For each parameter of a request, FastAPI asks again whether its annotation is a
    sequence (twice), whether it is a model of parameters, and under which request keys it is
    read: ~20% of a `GET` with three query and path parameters (profiled natively), though the
    answers depend only on the parameter's declaration, made when the route was. Its
    dependency module gets each of them `once_per_object` (only its callers see it: none of
    them changes an answer). So do the questions it asks of the endpoint and of each
    dependency on every request (is it a generator, an async generator, a coroutine function:
    each through an LRU cache keyed by a new wrapper object, hashed and compared in Python),
    one wrapper for every module that asks them: a `GET` with a dependency on a dependency
    1.77 M -> 1.42 M fuel. `prepare` asks them all for every route at build time, so that a
    request finds them answered. (A question cheaper than the asking, such as which form
    models a body is, is left alone.)"""
    try:
        from fastapi.dependencies import utils
    except ImportError:
        return
    for name in _PER_PARAMETER:
        function = getattr(utils, name, None)
        if callable(function) and not getattr(function, "_wasmgate", False):
            setattr(utils, name, once_per_object(function))
    modules = [importlib.import_module(name) for name in _ASKING_PER_CALLABLE]
    for name in _PER_CALLABLE:
        function = getattr(modules[0], name, None)
        if not callable(function) or getattr(function, "_wasmgate", False):
            continue
        once = once_per_object(function)  # one wrapper, so one answer, for every module asking
        for module in modules:
            if getattr(module, name, None) is function:
                setattr(module, name, once)


def _ask_per_parameter(dependant: Any) -> None:
    """Ask `_PER_PARAMETER`'s questions of `dependant`'s parameters and its dependencies', and
    `_PER_CALLABLE`'s of their callables (at build time: FastAPI's code on declarations, which
    runs none of the author's). A question that raises is left for the request to ask, as
    FastAPI would."""
    try:
        from fastapi.dependencies import utils
    except ImportError:
        return
    asks = [getattr(utils, name, None) for name in _PER_PARAMETER]
    if not all(getattr(ask, "_wasmgate", False) for ask in asks):
        return  # not installed, or a release without one of them
    is_sequence, param_model, aliases = asks
    of_callables = [getattr(utils, name, None) for name in _PER_CALLABLE]
    pending, seen = [dependant], set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        for ask in of_callables:
            if getattr(ask, "_wasmgate", False):
                _ask(ask, getattr(current, "call", None))
        for kind in ("path_params", "query_params", "header_params", "cookie_params", "body_params"):
            for field in getattr(current, kind, None) or ():
                info = getattr(field, "field_info", None)
                if info is None:
                    continue
                _ask(is_sequence, info.annotation)
                _ask(aliases, field)
                if kind == "header_params":
                    for flag in (True, False):
                        _ask(aliases, field, convert_underscores=flag)
                model = _ask(param_model, field)
                if model is not None:  # a model of parameters: its fields are read one by one
                    for inner in _ask(getattr(utils, "get_cached_model_fields", None), model) or ():
                        _ask(is_sequence, inner.field_info.annotation)
                        for flag in (True, False):
                            _ask(aliases, inner, convert_underscores=flag)
        pending.extend(getattr(current, "dependencies", None) or ())


def _ask(question: Any, subject: Any, **options: Any) -> Any:
    """`question(subject, **options)`, or None if it raises (or is missing)."""
    try:
        return question(subject, **options)
    except Exception:
        return None


class StartupFailed(Exception):
    """The app's lifespan startup failed: the build fails with its message."""


# What the lifespan's startup left in its state (ASGI lifespan "state"): each request's scope
# gets a shallow copy, as uvicorn gives it.
_LIFESPAN_STATE: dict[str, Any] = {}
_LIFESPAN_TASKS: list[asyncio.Task] = []  # kept suspended at its shutdown wait, never resumed


def start(app: Any) -> None:
    """Run `app`'s ASGI lifespan up to its startup's end, now (at build time), as uvicorn does
    before serving. An app that does not speak the lifespan protocol (it raises on the scope,
    or returns, before saying anything) is served without one, as uvicorn's `lifespan="auto"`
    does; one whose startup fails fails the build."""
    loop = _loop()
    said: list[dict[str, Any]] = []
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": _LIFESPAN_STATE}
    asked = False

    async def receive() -> dict[str, Any]:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "lifespan.startup"}
        await loop.create_future()  # the shutdown: an instance ends with its request instead
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        said.append(message)
        if not answered.done():
            answered.set_result(None)

    answered = loop.create_future()
    task = loop.create_task(app(scope, receive, send))
    try:
        loop.run_until_complete(asyncio.wait([task, answered], return_when=asyncio.FIRST_COMPLETED))
    except WaitsForever:
        raise StartupFailed("it waits for something that never comes (nothing is scheduled on its event loop)") from None
    if said and said[0]["type"] == "lifespan.startup.failed":
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: its message is the one the app sent
        raise StartupFailed(said[0].get("message") or "the app's lifespan startup failed")
    if not said:
        if not task.cancelled() and task.exception() is not None:
            _LIFESPAN_STATE.clear()  # no lifespan support: nothing it half-set is kept
        return
    _LIFESPAN_TASKS.append(task)


def prepare(app: Any) -> None:
    """Do now, at build time, what `app` and the apps mounted in it would do on their first
    request."""
    try:
        from fastapi.routing import _extract_endpoint_context as endpoint_context
    except ImportError:  # not FastAPI, or a release without it
        endpoint_context = None
    seen: set[int] = set()
    pending = [app]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if getattr(current, "middleware_stack", False) is None and hasattr(current, "build_middleware_stack"):
            current.middleware_stack = current.build_middleware_stack()
        _docs_routes_last(current)
        for route, _path, _in_schema in _flat_routes(getattr(current, "routes", None) or []):
            dependant = getattr(route, "dependant", None)
            if endpoint_context is not None and getattr(dependant, "call", None) is not None:
                endpoint_context(dependant.call)
            if dependant is not None:
                _ask_per_parameter(dependant)
            if getattr(route, "routes", None) is not None and getattr(route, "app", None) is not None:
                pending.append(route.app)  # a Mount: the app or router inside it


def _docs_routes_last(app: Any) -> None:
    """Move a FastAPI app's own documentation routes (`/openapi.json`, `/docs`, its OAuth2
    redirect, `/redoc`: FastAPI lists them first) after the app's routes, when that cannot
    change which route answers a request: every other route is a plain route, websocket
    route, FastAPI route or included router, and none of them matches any of those paths, for
    any method (a catch-all or a route of the same path keeps the order as it is). A router
    tries its routes in order, so each request stops trying these four first (~3% of a
    FastAPI echo's fuel)."""
    try:
        from fastapi import FastAPI
        from fastapi.routing import APIRoute, APIWebSocketRoute
        from starlette.routing import Match, Route, WebSocketRoute
    except ImportError:
        return
    if not isinstance(app, FastAPI) or not isinstance(getattr(app.router, "routes", None), list):
        return
    urls = {app.openapi_url, app.docs_url, app.redoc_url}
    if app.docs_url:
        urls.add(app.swagger_ui_oauth2_redirect_url)
    urls.discard(None)
    routes = app.router.routes
    docs = [r for r in routes if type(r) is Route and r.path in urls and not r.include_in_schema]
    others = [r for r in routes if not any(r is d for d in docs)]
    if not docs or docs == routes[-len(docs):]:
        return
    known = (APIRoute, APIWebSocketRoute, Route, WebSocketRoute)
    try:
        for route in others:
            if not all(type(entry) in known or isinstance(entry, APIRoute) for entry, _, _ in _flat_routes([route])):
                return
            for url in urls:
                if route.matches(_route_scope("GET", url))[0] is not Match.NONE:  # PARTIAL: the path matched
                    return
    except Exception:  # a route that cannot be asked this way: keep the order
        return
    routes[:] = others + docs
    changed = getattr(app.router, "_mark_routes_changed", None)
    if changed is not None:
        changed()  # what FastAPI caches about its routes' order is worked out again


def _route_scope(method: str, path: str) -> dict[str, Any]:
    """The least of an HTTP scope a route's `matches` reads: whether `method` and `path` reach it."""
    return {"type": "http", "path": path, "root_path": "", "method": method, "headers": []}


def _flat_routes(routes: list[Any]) -> Any:
    """(route, its full path, whether it is in the schema) for each route, the routes of
    included routers in their place.
    FastAPI (0.16x) keeps an `include_router` as one lazy entry whose routes, with their
    prefixes and dependencies applied, it works out and caches on the first request that
    reaches it (~2 M fuel for a router of two routes): asking for them here does that now."""
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is None:
            yield route, getattr(route, "path", ""), getattr(route, "include_in_schema", True)
            continue
        low_priority = getattr(route, "effective_low_priority_routes", None)
        if low_priority is not None:
            low_priority()
        for context in contexts():
            in_schema = context.include_in_schema and getattr(context.original_route, "include_in_schema", True)
            yield context.original_route, context.path, in_schema


# A path parameter's value for each of Starlette's own convertors (any value its regex takes).
_PARAM_VALUES = {"StringConvertor": "0", "PathConvertor": "0", "IntegerConvertor": "0", "FloatConvertor": "0",
                 "UUIDConvertor": "00000000-0000-0000-0000-000000000000"}


def prime(app: Any) -> list[str]:
    """Send each of `app`'s routes that take a JSON body two requests whose body is not JSON,
    now, at build time: FastAPI answers them 422 (`json_invalid`) from the route's own request
    handler before it solves a dependency, validates a value or calls the endpoint, so no code
    of the author's runs. A route's first request in an instance costs ~80k fuel more than its
    later ones (CPython running that route's handler for the first time), though the warm-up
    app ran the same framework code (measured: the echo's first call 1.13 M fuel, 1.05 M after
    this, 1.00 M for a third call); done here, that is in the snapshot every instance starts
    from. The paths primed are returned.

    Only where nothing but FastAPI's and Starlette's code can be on that request's way: no
    middleware of the app's but CORS and GZip, FastAPI's own handler for validation errors, a
    route of FastAPI's own class whose body is not a form, path parameters of Starlette's
    convertors, and no route before it that could take the request."""
    try:
        from fastapi import FastAPI
        from fastapi.exception_handlers import request_validation_exception_handler
        from fastapi.exceptions import RequestValidationError
        from fastapi.routing import APIRoute
        from starlette.middleware.cors import CORSMiddleware
        from starlette.middleware.gzip import GZipMiddleware
        from starlette.routing import Match, Route, WebSocketRoute
    except ImportError:
        return []
    if not isinstance(app, FastAPI) or not isinstance(getattr(app.router, "routes", None), list):
        return []
    if any(middleware.cls not in (CORSMiddleware, GZipMiddleware) for middleware in app.user_middleware):
        return []  # an author's middleware (`@app.middleware`, a class of theirs) would see the request
    if app.exception_handlers.get(RequestValidationError) is not request_validation_exception_handler:
        return []  # the author's handler would answer the 422
    primed = []
    before: list[Any] = []
    for route in list(app.router.routes):
        if type(route) not in (APIRoute, Route, WebSocketRoute) or not _starlettes_convertors(route):
            break  # a mount, an included router, an author's convertor: what it takes is not looked into
        target = _primable(route)
        if target is not None:
            method, path = target
            scope = _route_scope(method, path)
            try:
                takes = route.matches(scope)[0] is Match.FULL and all(
                    earlier.matches(scope)[0] is Match.NONE for earlier in before
                )
            except Exception:  # a route that cannot be asked this way: leave it
                takes = False
            if takes:
                for _ in range(2):  # CPython specialises an instruction on its second run
                    if call(app, method, path, [], _JSON, lambda: b"{", [], []).status != 422:
                        return primed  # not FastAPI's refusal: the request went elsewhere; no more
                primed.append(f"{method} {path}")
        before.append(route)
    return primed


def _starlettes_convertors(route: Any) -> bool:
    """Whether each of `route`'s path parameters has one of Starlette's own convertors (an
    author's runs its own code when a path matches)."""
    return all(
        type(convertor).__module__ == "starlette.convertors" and type(convertor).__name__ in _PARAM_VALUES
        for convertor in getattr(route, "param_convertors", {}).values()
    )


def _primable(route: Any) -> tuple[str, str] | None:
    """(method, path) of a request that reaches `route` if it is a FastAPI route taking a JSON
    body, with a value for each path parameter; None otherwise."""
    from fastapi import params
    from fastapi.routing import APIRoute

    if type(route) is not APIRoute or not route.methods:
        return None
    body = getattr(route, "body_field", None)
    if body is None or isinstance(getattr(body, "field_info", None), params.Form):
        return None
    values = {name: _PARAM_VALUES[type(convertor).__name__] for name, convertor in route.param_convertors.items()}
    try:
        path = route.path_format.format(**values)
    except (KeyError, IndexError, ValueError):
        return None
    return sorted(route.methods)[0], path


def warm_up_app() -> Any:
    """The app `warm()` calls: FastAPI's request path (routing, parameters, a pydantic body and
    response model, validation errors, JSON responses) with no author code in it. None when
    FastAPI is not on the app's path (a plain ASGI app: nothing to warm)."""
    try:
        from fastapi import APIRouter, Depends, FastAPI
        from pydantic import BaseModel
    except ImportError:
        return None

    class WarmItem(BaseModel):
        name: str
        price: float
        tags: list[str] = []

    app = FastAPI()  # its docs routes too: an author's app is routed through them first

    @app.post("/items/{item_id}", response_model=WarmItem)
    async def post_item(item_id: int, item: WarmItem, q: str | None = None) -> WarmItem:
        return item

    @app.get("/items")
    def get_items(skip: int = 0, limit: int = 10) -> dict:
        return {"skip": skip, "limit": limit}

    async def token(token: str = "") -> str:
        return token

    router = APIRouter(prefix="/router", dependencies=[Depends(token)])  # `include_router`'s own path

    @router.get("/{item_id}")
    async def routed_item(item_id: str) -> dict:
        return {"item_id": item_id}

    app.include_router(router)
    prepare(app)
    return app


_JSON = [("content-type", "application/json")]
_WARM_CALLS = [
    ("POST", "/items/1", [("q", "x")], _JSON, b'{"name": "warm", "price": 1.5, "tags": ["a"]}'),
    ("POST", "/items/x", [], _JSON, b'{"name": 1}'),  # a 422 with several errors
    ("GET", "/items", [("skip", "1")], [], b""),
    ("GET", "/router/1", [("token", "t")], [], b""),
    ("GET", "/nowhere", [], [], b""),  # a 404
]


def warm(warm_app: Any) -> None:
    """Send the warm-up requests through `warm_app` (from `warm_up_app()`, never the author's)."""
    for method, path, query, headers, body in _WARM_CALLS:
        call(warm_app, method, path, query, headers, lambda body=body: body, [], [])


def call(
    app: Any,
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: list[tuple[str, str]],
    body: Callable[[], bytes],
    form: list[tuple[str, str]],
    files: list[Upload],
    client: tuple[str, int] | None = None,
    mount: str = "",
) -> Answer:
    """One request through `app`, on this instance's event loop; `client` is the caller's
    (host, port), as a server gives it (`request.client`).

    `mount` is the path the gateway serves the API under (`/run/{id}`). The request's path
    stays the one inside the API, as the app sees it natively; the mount is the scope's
    `app_root_path`, so `url_for` builds URLs that reach the API through the gateway, and a
    redirect to an absolute URL on the caller's own host (Starlette's trailing-slash
    redirect) is moved under the mount too (the gateway does that for relative ones).

    An exception the app lets escape after answering (Starlette's error middleware sends its
    `500 Internal Server Error`, then re-raises, as under uvicorn) is written to stderr, where
    the invocation log keeps it, and the answer stands: callers get what FastAPI answers. One
    that escapes before any answer, and a MemoryError, propagate (the host reports the call
    as failed)."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("ascii") if _UNQUOTED.fullmatch(path) else quote(path).encode("ascii"),
        "query_string": urlencode(query).encode("ascii") if query else b"",
        "root_path": "",
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers],
        "client": client,
        "server": None,
        "state": _LIFESPAN_STATE.copy(),
    }
    if mount:
        scope["app_root_path"] = mount
    if files or _is_multipart(headers):
        scope["wasmgate.form"] = lambda: _form_data(form, files)
        payload = b""  # the host parsed it: the form is the body
    else:
        payload = body()
    status = 500
    response_headers: list[tuple[str, str]] = []
    chunks: list[bytes] = []
    delivered = started = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": payload, "more_body": False}
        await asyncio.get_running_loop().create_future()  # the caller never disconnects mid-call
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, started
        if message["type"] == "http.response.start":
            started = True
            status = message["status"]
            response_headers.extend((k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", ()))
        elif message["type"] == "http.response.body":
            chunks.append(bytes(message.get("body", b"")))

    try:
        _run(_loop(), app(scope, receive, send))
    except MemoryError:
        raise  # the sandbox's memory limit: the host reports it as such
    except Exception:
        if not started:
            raise
        traceback.print_exc()
    if mount:
        response_headers = _redirects_under(mount, headers, response_headers)
    return Answer(status, response_headers, b"".join(chunks))


def _redirects_under(
    mount: str, request_headers: list[tuple[str, str]], response_headers: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """`Location` headers that name a path on the caller's own host (the request's `Host`)
    outside `mount`, moved under it: the app sees itself at that host's root."""
    if not any(name.lower() == "location" for name, _ in response_headers):
        return response_headers  # most answers: nothing to look at
    host = next((value for name, value in request_headers if name == "host"), None)
    if host is None:
        return response_headers
    moved = []
    for name, value in response_headers:
        if name.lower() == "location":
            target = urlsplit(value)
            inside = target.path == mount or target.path.startswith(mount + "/")
            if target.scheme in ("http", "https") and target.netloc == host and not inside:
                value = urlunsplit(target._replace(path=mount + (target.path or "/")))
        moved.append((name, value))
    return moved


# What `quote(path)` leaves as it is (its safe characters: unreserved ones and "/").
_UNQUOTED = re.compile(r"[A-Za-z0-9_.~/-]*")
_LOOPS: list[asyncio.AbstractEventLoop] = []


def _loop() -> asyncio.AbstractEventLoop:
    """This instance's event loop (an instance serves one request, after its warm-up)."""
    if not _LOOPS:
        loop = asyncio.new_event_loop()
        # A loop keeps every async generator started on it in a WeakSet, for its shutdown to
        # close them; this one is never shut down (the instance ends instead), so it keeps
        # none (~1% of a FastAPI echo's fuel: Starlette reads each body through one).
        loop._asyncgen_firstiter_hook = lambda agen: None  # type: ignore[method-assign]
        _LOOPS.append(loop)
    return _LOOPS[0]


def _run(loop: asyncio.AbstractEventLoop, coroutine: Any) -> None:
    """`loop.run_until_complete(coroutine)`, with its task started eagerly: a request that
    never waits (most do not) ends inside the task's first step, without a turn of the loop
    (~4% of a FastAPI echo's fuel). The task is the same either way (current task, context),
    and what it scheduled without waiting for (a task it created) still gets the turn of the
    loop it would have had."""
    setup = getattr(loop, "_run_forever_setup", None)  # Python 3.13+; the guest runs 3.14
    if setup is None:
        loop.run_until_complete(coroutine)
        return
    setup()
    try:
        task = asyncio.Task(coroutine, loop=loop, eager_start=True)
    finally:
        loop._run_forever_cleanup()  # type: ignore[attr-defined]
    if not task.done() or loop._ready:  # type: ignore[attr-defined]
        loop.run_until_complete(task)
    task.result()


def _is_multipart(headers: list[tuple[str, str]]) -> bool:
    return any(k == "content-type" and v.lower().startswith("multipart/form-data") for k, v in headers)


def _form_data(form: list[tuple[str, str]], files: list[Upload]) -> Any:
    from starlette.datastructures import FormData, Headers, UploadFile

    items: list[tuple[str, Any]] = list(form)
    for upload in files:
        disposition = f'form-data; name="{upload.field}"; filename="{upload.filename}"'
        part_headers = Headers({"content-disposition": disposition, "content-type": upload.content_type})
        items.append((upload.field, UploadFile(
            open(upload.path, "rb"), size=upload.size, filename=upload.filename, headers=part_headers
        )))
    return FormData(items)


def describe(app: Any) -> dict[str, Any]:
    """The route table (for logs and usage) and, for a FastAPI app, its own OpenAPI document."""
    routes = [
        {"method": method, "path": _template(path), "name": name, "summary": summary}
        for path, methods, name, summary in _walk(getattr(app, "routes", []), "")
        for method in sorted(methods)
    ]
    description: dict[str, Any] = {"routes": routes}
    if callable(getattr(app, "openapi", None)):
        description["openapi"] = app.openapi()
    return description


def _walk(routes: list[Any], prefix: str) -> Any:
    for route, own_path, in_schema in _flat_routes(routes):
        path = prefix + own_path
        if not in_schema:
            continue  # FastAPI's own /docs and /openapi.json: the gateway serves those
        if getattr(route, "methods", None):
            yield path, route.methods, getattr(route, "name", "") or "", getattr(route, "summary", None) or ""
        elif getattr(route, "routes", None):  # a Mount
            yield from _walk(route.routes, path)


def _template(path: str) -> str:
    """Starlette's `{id:int}` as the gateway's `{id}`; `{rest:path}` stays."""
    return re.sub(r"\{(\w+):(?!path\})\w+\}", r"{\1}", path)
