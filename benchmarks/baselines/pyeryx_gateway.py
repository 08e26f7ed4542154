"""A fresh pyeryx sandbox (wasmtime + CPython 3.14, pre-initialized) per request.

Runs under Python >= 3.12 with pyeryx installed (benchmarks/compare.py makes that venv)."""

import eryx
from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from benchmarks.baselines.common import check_key, serve
from benchmarks.baselines.peer_code import program_for

app = FastAPI()


def run_fresh(program: str) -> bytes:
    return eryx.Sandbox().execute(program).stdout


@app.post("/run/{api}/{path:path}")
async def run(api: str, path: str, request: Request) -> Response:
    check_key(request)
    program = await program_for(path, request)
    out = await run_in_threadpool(run_fresh, program)
    return Response(out.strip(), media_type="application/json")


if __name__ == "__main__":
    serve(app)
