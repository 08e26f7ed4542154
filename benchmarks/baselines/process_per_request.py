"""Isolation by process: one fresh `python -I -S` per request runs the handler (stdlib only,
no site-packages), fed the request on stdin; the gateway parses multipart and spools files."""

import asyncio
import json
import sys
import tempfile
from pathlib import Path

from fastapi import FastAPI, Request
from starlette.responses import Response

from benchmarks.baselines.common import check_key, serve

HANDLER = r'''
import hashlib, json, sys
request = json.loads(sys.stdin.read())
if request["path"] == "/echo":
    result = json.loads(request["body"])
else:
    with open(request["file"], "rb") as f:
        data = f.read()
    result = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
sys.stdout.write(json.dumps(result))
'''

app = FastAPI()


@app.post("/run/{api}/{path:path}")
async def run(api: str, path: str, request: Request) -> Response:
    check_key(request)
    with tempfile.TemporaryDirectory() as tmp:
        if path == "upload":
            form = await request.form()
            spooled = Path(tmp) / "file"
            spooled.write_bytes(await form["file"].read())
            message = {"path": "/upload", "file": str(spooled)}
        else:
            message = {"path": "/echo", "body": (await request.body()).decode()}
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-S", "-c", HANDLER,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await child.communicate(json.dumps(message).encode())
    return Response(out, 200 if child.returncode == 0 else 500, media_type="application/json")


if __name__ == "__main__":
    serve(app)
