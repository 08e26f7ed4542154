"""Routing: `App` with its route table, path templates, dispatch and `describe()`."""

from __future__ import annotations

import inspect
import re
from typing import Any, Callable, Coroutine, Iterable, TypeVar

from ._errors import HTTPException
from ._json import MAX_JSON_DEPTH
from ._params import HandlerParams
from ._request import Request
from ._responses import Response, to_response

Handler = TypeVar("Handler", bound=Callable[..., Any])

# The method of the synthetic request `App.warm` routes: no HTTP method, and refused as a
# route's method, so that the router never hands a warm-up request to a handler.
WARM_METHOD = "WASMGATE-WARM"

_TEMPLATE_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z_]+))?\}")


def compile_template(template: str) -> tuple[re.Pattern[str], frozenset[str]]:
    """A path template as a regex and its parameter names.

    `{name}` matches one non-empty segment, `{name:path}` the rest of the path (slashes included).
    """
    if not template.startswith("/"):
        raise ValueError(f"route path must start with '/': {template!r}")
    parts, names, end = [], set(), 0
    for match in _TEMPLATE_PARAM.finditer(template):
        name, converter = match.groups()
        if converter not in (None, "path"):
            raise ValueError(f"unknown path converter {converter!r} in {template!r}")
        if name in names:
            raise ValueError(f"duplicate path parameter {name!r} in {template!r}")
        names.add(name)
        parts.append(re.escape(template[end : match.start()]))
        parts.append(f"(?P<{name}>{'.+' if converter else '[^/]+'})")
        end = match.end()
    parts.append(re.escape(template[end:]))
    literal = _TEMPLATE_PARAM.sub("", template)
    if "{" in literal or "}" in literal:
        raise ValueError(f"malformed path template {template!r}")
    return re.compile("".join(parts)), frozenset(names)


class Route:
    """One handler registered for a path template and some methods."""

    def __init__(self, path: str, methods: Iterable[str], func: Callable[..., Any], status_code: int) -> None:
        self.path = path
        methods = [methods] if isinstance(methods, str) else methods
        self.methods = tuple(dict.fromkeys(method.upper() for method in methods))
        if not self.methods:
            raise ValueError(f"route {path!r} needs at least one method")
        if WARM_METHOD in self.methods:
            raise ValueError(f"{WARM_METHOD} is reserved and cannot be routed")
        self.func = func
        self.name: str = getattr(func, "__name__", repr(func))
        self.status_code = status_code
        self.pattern, self.path_names = compile_template(path)
        # Resolve annotations now (at build time in the sandbox) rather than per request,
        # unless one names something defined later in the module: then on first use.
        self._params: HandlerParams | None
        try:
            self._params = HandlerParams(func, self.path_names)
        except NameError:
            self._params = None

    @property
    def params(self) -> HandlerParams:
        if self._params is None:
            self._params = HandlerParams(self.func, self.path_names)
        return self._params

    def match(self, path: str) -> dict[str, str] | None:
        """The path parameters if `path` matches the template, else None."""
        match = self.pattern.fullmatch(path)
        return match.groupdict() if match else None

    def accepts(self, method: str) -> bool:
        return method in self.methods or (method == "HEAD" and "GET" in self.methods)

    def handle(self, request: Request) -> Response:
        result = self.func(**self.params.extract(request))
        if inspect.iscoroutine(result):
            result = _run_coroutine(result)
        return to_response(result, self.status_code)

    def describe(self) -> list[dict[str, Any]]:
        summary = (inspect.getdoc(self.func) or "").strip().split("\n", 1)[0]
        params, body = self.params.describe(), self.params.describe_body()
        return [
            {
                "method": method,
                "path": self.path,
                "name": self.name,
                "summary": summary,
                "status_code": self.status_code,
                "params": params,
                "body": body,
            }
            for method in self.methods
        ]


class App:
    """An API: register handlers with the decorators, then `dispatch` requests to them."""

    def __init__(self, *, max_json_depth: int = MAX_JSON_DEPTH) -> None:
        """`max_json_depth`: how deep arrays and objects in a JSON body may nest; deeper is
        422 VALIDATION_ERROR, checked before the body is parsed."""
        if max_json_depth < 1:
            raise ValueError("max_json_depth must be at least 1")
        self.routes: list[Route] = []
        self.max_json_depth = max_json_depth

    def route(
        self, path: str, methods: Iterable[str] = ("GET",), *, status_code: int = 200
    ) -> Callable[[Handler], Handler]:
        """Register the decorated function for `path` and `methods`; returns it unchanged."""

        def register(func: Handler) -> Handler:
            route = Route(path, methods, func, status_code)
            for other in self.routes:
                taken = set(other.methods) & set(route.methods)
                if other.path == path and taken:
                    raise ValueError(f"{', '.join(sorted(taken))} {path} is already routed to {other.name}")
            self.routes.append(route)
            return func

        return register

    def get(self, path: str, *, status_code: int = 200) -> Callable[[Handler], Handler]:
        return self.route(path, ["GET"], status_code=status_code)

    def post(self, path: str, *, status_code: int = 200) -> Callable[[Handler], Handler]:
        return self.route(path, ["POST"], status_code=status_code)

    def put(self, path: str, *, status_code: int = 200) -> Callable[[Handler], Handler]:
        return self.route(path, ["PUT"], status_code=status_code)

    def patch(self, path: str, *, status_code: int = 200) -> Callable[[Handler], Handler]:
        return self.route(path, ["PATCH"], status_code=status_code)

    def delete(self, path: str, *, status_code: int = 200) -> Callable[[Handler], Handler]:
        return self.route(path, ["DELETE"], status_code=status_code)

    def dispatch(self, request: Request) -> Response:
        """Run the handler for `request` and return its response.

        Routing and validation failures and HTTPExceptions become error responses; any
        other exception from a handler propagates to the caller.
        """
        request.max_json_depth = self.max_json_depth
        try:
            response = self._dispatch(request)
        except HTTPException as exc:
            response = exc.to_response()
        if request.method == "HEAD":
            return Response(b"", response.status_code, response.headers)
        return response

    def _dispatch(self, request: Request) -> Response:
        allowed: set[str] = set()
        for route in self.routes:
            path_params = route.match(request.path)
            if path_params is None:
                continue
            if route.accepts(request.method):
                request.path_params = path_params
                return route.handle(request)
            allowed.update(route.methods)
        if not allowed:
            raise HTTPException(404, f"no route matches {request.path}")
        if "GET" in allowed:
            allowed.add("HEAD")
        raise HTTPException(
            405,
            f"method {request.method} is not allowed for {request.path}",
            headers={"allow": ", ".join(sorted(allowed))},
        )

    def warm(self, request: Request) -> Response:
        """Run the request path (routing, errors, JSON) on a `WARM_METHOD` request, never a handler.

        The sandbox calls this on a new instance before its real request arrives, so that
        the first request does not pay for CPython's first-use work.
        """
        if request.method != WARM_METHOD or any(WARM_METHOD in route.methods for route in self.routes):
            raise ValueError(f"warm() takes a {WARM_METHOD} request")
        request.json(), request.query_params, request.content_type  # noqa: B018 (parsing is the work)
        return self.dispatch(request)

    def describe(self) -> dict[str, Any]:
        """The route table as JSON-able data, from which the host builds the OpenAPI document."""
        return {"routes": [entry for route in self.routes for entry in route.describe()]}


def _run_coroutine(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Finish an `async def` handler's coroutine on a new event loop (in the sandbox, a
    `SandboxEventLoop`: timers and tasks, no sockets)."""
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()
