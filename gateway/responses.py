"""What a guest's answer becomes over HTTP, for the data plane and the job worker alike.

The guest's headers are untrusted: those with bad names or CR/LF/NUL in their values are
dropped, as are framing fields (the server sets them) and the gateway's own. The runtime has
already refused a status outside 200-599 (`InvalidResponse`). A `Location` the guest gives as
a path (`/items`) is a path inside the API: it becomes one under the API's mount
(`/run/{id}/items`), so a redirect never leaves the API.
"""

from __future__ import annotations

import re

from starlette.responses import Response

from runtime import SandboxResponse

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
# Not taken from the guest: framing (the server sets it) and the gateway's own fields.
_DROP_RESPONSE = HOP_BY_HOP | {"content-length", "x-request-id", "x-wasmgate-fuel", "x-wasmgate-duration-ms"}
_NO_BODY = {204, 304}
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def guest_response(guest: SandboxResponse, mount: str) -> Response:
    """The guest's answer as the caller gets it (the runtime has checked its status).

    204 and 304 answers carry no body, whatever the guest put there: HTTP forbids one, and
    the server would fail on it mid-response. (Answers to HEAD keep their Content-Length;
    the server sends no body.)
    """
    body = b"" if guest.status in _NO_BODY else guest.body
    response = Response(body, guest.status)
    response.raw_headers.extend(_guest_headers(guest.headers, mount))
    return response


def _guest_headers(pairs: list[tuple[str, str]], mount: str) -> list[tuple[bytes, bytes]]:
    """The guest's headers as raw pairs; malformed ones (bad names, CR/LF) are dropped."""
    raw = []
    for name, value in pairs:
        lowered = name.lower()
        if lowered in _DROP_RESPONSE or not _TOKEN.fullmatch(name) or any(c in value for c in "\r\n\0"):
            continue
        if lowered == "location" and value.startswith("/") and not value.startswith("//"):
            value = mount + value
        try:
            encoded = value.encode("latin-1")
        except UnicodeEncodeError:
            encoded = value.encode("utf-8")
        raw.append((lowered.encode("ascii"), encoded))
    return raw
