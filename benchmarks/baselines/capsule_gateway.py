"""A fresh capsule-run sandbox (its CLI runs a Python-in-wasm sandbox) per request.

Runs under Python >= 3.12 with capsule-run-adapter installed, with the `capsule` command on
PATH (benchmarks/compare.py makes that venv)."""

from capsule_adapter import run_python
from fastapi import FastAPI, Request
from starlette.responses import Response

from benchmarks.baselines.common import check_key, serve
from benchmarks.baselines.peer_code import program_for

app = FastAPI()


@app.post("/run/{api}/{path:path}")
async def run(api: str, path: str, request: Request) -> Response:
    check_key(request)
    program = await program_for(path, request)
    out = await run_python(program)
    return Response(out.strip(), media_type="application/json")


if __name__ == "__main__":
    serve(app)
