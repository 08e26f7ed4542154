"""A FastAPI app that shows what ran in its instance: middleware, handlers and a module-level
counter, each counted, and a route that raises."""
from typing import Annotated

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import RedirectResponse

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
    return {"client": request.client, "headers": [name for name in request.headers], "path": request.url.path,
            "url_for": str(request.url_for("client"))}


@app.post("/form")
async def form(name: Annotated[str, Form()], tags: Annotated[list[str], Form()] = []):
    return {"name": name, "tags": tags}


@app.get("/absolute-redirect")
def absolute_redirect(request: Request):
    return RedirectResponse(str(request.url.replace(path="/elsewhere/", query="a=1")))


routed = APIRouter(prefix="/routed", tags=["routed"])
hidden = APIRouter(prefix="/hidden", include_in_schema=False)


@routed.get("/{item}")
def routed_item(item: str):
    return {"routed": item}


@hidden.get("/{item}")
def hidden_item(item: str):
    return {"hidden": item}


app.include_router(routed)
app.include_router(hidden)


@app.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "HEAD"])
async def catch_all(rest: str):
    CALLS["handler"] += 1
    return {"calls": CALLS, "rest": rest}
