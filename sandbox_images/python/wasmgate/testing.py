"""Testing without a sandbox: `TestClient` builds `Request`s the way the host would and
calls `App.dispatch` directly, with an httpx-like interface. No HTTP is involved: form
fields and files go straight into the request.
"""

from __future__ import annotations

import json as json_module
import mimetypes
import os
from collections.abc import Iterable, Iterator, Mapping
from functools import partialmethod
from typing import Any, Union
from urllib.parse import parse_qsl, unquote

from ._request import Request
from ._responses import Response
from ._routing import App
from ._uploads import UploadFile

# {"key": value or [values]} or [(key, value), ...]; values are str(), bools as true/false.
PairsInput = Union[Mapping[str, Any], Iterable[tuple[str, Any]]]
# {"field": ("name.txt", b"bytes" or str or file, "text/plain")} (content type optional),
# or a list of (field, ...) pairs to send several files under one field.
FilesInput = Union[Mapping[str, Any], Iterable[tuple[str, Any]]]


class Headers(Mapping[str, str]):
    """Response headers: a read-only, case-insensitive mapping (first value of each name)."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._pairs = [(name.lower(), value) for name, value in pairs]

    def __getitem__(self, name: str) -> str:
        name = name.lower()
        for key, value in self._pairs:
            if key == name:
                return value
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(name for name, _ in self._pairs))

    def __len__(self) -> int:
        return len({name for name, _ in self._pairs})

    def get_list(self, name: str) -> list[str]:
        """Every value of header `name`."""
        name = name.lower()
        return [value for key, value in self._pairs if key == name]

    def __repr__(self) -> str:
        return f"Headers({self._pairs!r})"


class ClientResponse:
    """What `TestClient` returns: `status_code`, `headers`, `content`, `text`, `json()`."""

    def __init__(self, response: Response) -> None:
        self.status_code = response.status_code
        self.headers = Headers(response.headers)
        self.content = response.body

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json_module.loads(self.content)

    def __repr__(self) -> str:
        return f"<ClientResponse [{self.status_code}]>"


class TestClient:
    """Call an `App` in-process: `TestClient(app).get("/hello/world?times=2")`.

    Exceptions raised by handlers (other than HTTPException) propagate to the test.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, app: App) -> None:
        self.app = app

    def request(
        self,
        method: str,
        path: str,
        *,
        params: PairsInput | None = None,
        headers: PairsInput | None = None,
        json: Any = None,
        data: PairsInput | None = None,
        files: FilesInput | None = None,
        content: bytes | str | None = None,
    ) -> ClientResponse:
        """Send a request. `json` (if not None) or `content` is the body; `data` the form fields."""
        path, _, query_string = path.partition("?")
        header_pairs = _pairs(headers)
        uploads = [_upload(field, value) for field, value in _items(files)]
        body = b""
        content_type = None
        if json is not None:
            body, content_type = json_module.dumps(json).encode("utf-8"), "application/json"
        elif content is not None:
            body = content.encode("utf-8") if isinstance(content, str) else bytes(content)
        if uploads:
            content_type = "multipart/form-data"
        elif data is not None:
            content_type = "application/x-www-form-urlencoded"
        if content_type and not any(name.lower() == "content-type" for name, _ in header_pairs):
            header_pairs.append(("content-type", content_type))
        request = Request(
            method,
            unquote(path),
            query=parse_qsl(query_string, keep_blank_values=True) + _pairs(params),
            headers=header_pairs,
            form=_pairs(data),
            files=uploads,
            body=body,
            client=("testclient", 50000),  # as Starlette's TestClient gives it
        )
        return ClientResponse(self.app.dispatch(request))

    # Like httpx: everything after the path is a keyword argument.
    get = partialmethod(request, "GET")
    post = partialmethod(request, "POST")
    put = partialmethod(request, "PUT")
    patch = partialmethod(request, "PATCH")
    delete = partialmethod(request, "DELETE")


def _items(value: PairsInput | None) -> list[tuple[str, Any]]:
    if value is None:
        return []
    return list(value.items() if isinstance(value, Mapping) else value)


def _pairs(value: PairsInput | None) -> list[tuple[str, str]]:
    """Key/value pairs as strings; a list or tuple value repeats its key."""
    pairs = []
    for key, item in _items(value):
        for single in item if isinstance(item, (list, tuple)) else [item]:
            pairs.append((key, _text(single)))
    return pairs


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _upload(field: str, value: Any) -> UploadFile:
    if isinstance(value, tuple):
        filename, data, *rest = value
    else:
        filename, data, rest = os.path.basename(getattr(value, "name", "upload")), value, []
    if hasattr(data, "read"):
        data = data.read()
    if isinstance(data, str):
        data = data.encode("utf-8")
    content_type = rest[0] if rest else mimetypes.guess_type(filename)[0] or "application/octet-stream"
    return UploadFile.from_bytes(bytes(data), filename=filename, content_type=content_type, field=field)
