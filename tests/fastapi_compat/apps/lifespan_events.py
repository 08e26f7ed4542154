"""Lifespan events (FastAPI's tutorial, "Lifespan Events"): a `lifespan` context manager loads a
model and yields state for every request; an included router's `on_event("startup")` handler
runs with it (the app's own `on_event` is ignored next to `lifespan=`, as FastAPI does)."""
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request

ml_models = {}
started = []


def fake_answer_to_everything_ml_model(x: float):
    return x * 42


@asynccontextmanager
async def lifespan(app: FastAPI):
    ml_models["answer_to_everything"] = fake_answer_to_everything_ml_model
    app.state.greeting = "hello from startup"
    started.append("lifespan")
    yield {"settings": {"units": "metric"}}
    ml_models.clear()  # at shutdown


app = FastAPI(lifespan=lifespan)
router = APIRouter(prefix="/router")


@app.on_event("startup")
def ignored_next_to_lifespan():
    started.append("app on_event")


@router.on_event("startup")
def router_startup():
    started.append("router on_event")


@router.get("/started")
def what_started():
    return {"started": started}


app.include_router(router)


@app.get("/predict")
async def predict(x: float):
    result = ml_models["answer_to_everything"](x)
    return {"result": result}


@app.get("/state")
async def state(request: Request):
    return {"greeting": request.app.state.greeting, "settings": request.state.settings}
