"""The incoming request as handlers and the router see it: `Request`."""

from __future__ import annotations

from typing import Any, Callable, Iterable

from ._json import MAX_JSON_DEPTH, loads
from ._uploads import UploadFile


class Request:
    """An HTTP request already parsed by the host.

    `path` is percent-decoded and starts with "/"; header names are lower-case; form
    fields and uploaded files are already split out of a form body; `client` is the
    caller's (host, port). The raw body is
    given either as `body` or as `body_reader`, called at most once and only when
    something asks for the body (in the sandbox it reads stdin).
    """

    def __init__(
        self,
        method: str = "GET",
        path: str = "/",
        *,
        query: Iterable[tuple[str, str]] = (),
        headers: Iterable[tuple[str, str]] = (),
        form: Iterable[tuple[str, str]] = (),
        files: Iterable[UploadFile] = (),
        body: bytes | None = None,
        body_reader: Callable[[], bytes] | None = None,
        client: tuple[str, int] | None = None,
    ) -> None:
        if body is not None and body_reader is not None:
            raise ValueError("give either body or body_reader, not both")
        if not path.startswith("/"):
            raise ValueError(f"request path must start with '/': {path!r}")
        self.method = method.upper()
        self.path = path
        self.query = list(query)
        self.headers = [(name.lower(), value) for name, value in headers]
        self.form = list(form)
        self.files = list(files)
        self.path_params: dict[str, str] = {}
        # The caller's (host, port) as the gateway saw it; None where there is no caller.
        self.client = client
        # How deep a JSON body may nest (the App sets its own when it dispatches).
        self.max_json_depth = MAX_JSON_DEPTH
        self._body = body
        self._body_reader = body_reader

    def body(self) -> bytes:
        """The raw request body (read on first call)."""
        if self._body is None:
            reader, self._body_reader = self._body_reader, None
            self._body = reader() if reader is not None else b""
        return self._body

    def json(self) -> Any:
        """The body parsed as JSON; raises ValueError if it is not valid JSON, and
        `JSONTooDeep` (a ValueError that answers 422 if not caught) if it nests deeper
        than `max_json_depth`."""
        return loads(self.body(), self.max_json_depth)

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of header `name` (case-insensitive), or `default`."""
        name = name.lower()
        return next((value for key, value in self.headers if key == name), default)

    @property
    def query_params(self) -> dict[str, str]:
        """Query parameters, the first value of each key."""
        params: dict[str, str] = {}
        for key, value in self.query:
            params.setdefault(key, value)
        return params

    @property
    def content_type(self) -> str:
        """The media type of the body, lower-case and without parameters ("" if absent)."""
        return (self.header("content-type") or "").split(";", 1)[0].strip().lower()

    def __repr__(self) -> str:
        return f"Request({self.method} {self.path})"
