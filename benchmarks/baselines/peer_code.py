"""The handler code the peer sandboxes (pyeryx, capsule-run) run, with the request inlined:
they take code, not requests, so the gateway writes the request into the program."""

from __future__ import annotations

import base64

from starlette.requests import Request

ECHO = "import json\nprint(json.dumps(json.loads({body!r})))\n"
UPLOAD = (
    "import base64, hashlib, json\ndata = base64.b64decode({data!r})\n"
    "print(json.dumps({{'size': len(data), 'sha256': hashlib.sha256(data).hexdigest()}}))\n"
)


def echo_program(body: bytes) -> str:
    return ECHO.format(body=body.decode())


def upload_program(data: bytes) -> str:
    return UPLOAD.format(data=base64.b64encode(data).decode())


async def program_for(path: str, request: Request) -> str:
    """The program that answers `request` to `path` (the echo or the upload)."""
    if path == "upload":
        return upload_program(await (await request.form())["file"].read())
    return echo_program(await request.body())
