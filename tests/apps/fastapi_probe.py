"""A FastAPI app that shows what ran in its instance: middleware, handlers and a module-level
counter, each counted, and a route that raises."""
from fastapi import FastAPI, Request

app = FastAPI()
CALLS = {"middleware": 0, "handler": 0, "module": 0}
CALLS["module"] += 1  # at import: at build time, once, inside the snapshot


@app.middleware("http")
async def count(request: Request, call_next):
    CALLS["middleware"] += 1
    return await call_next(request)


@app.get("/boom")
def boom():
    raise RuntimeError("kaboom from the handler")


@app.get("/client")
def client(request: Request):
    return {"client": request.client, "headers": [name for name in request.headers]}


@app.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "HEAD"])
async def catch_all(rest: str):
    CALLS["handler"] += 1
    return {"calls": CALLS, "rest": rest}
