"""FastAPI's native telemetry: off unless a provider is configured, and then what a handler
reads of the request being handled (`fastapi.telemetry.get_telemetry_data`)."""
from fastapi import FastAPI
from fastapi.telemetry import get_telemetry_data
from opentelemetry import trace


class LocalTracerProvider(trace.TracerProvider):
    """A provider of the app's own (FastAPI traces through any but the API's no-op one)."""

    def get_tracer(self, *args, **kwargs):
        return trace.NoOpTracer()


app = FastAPI()
traced = FastAPI(telemetry={"tracer_provider": LocalTracerProvider(), "metrics": False, "logs": False})


@app.get("/plain/{n}")
def plain(n: int):
    return {"n": n, "telemetry": get_telemetry_data() is not None}


@traced.get("/items/{n}")
async def traced_item(n: int, q: str = ""):
    data = get_telemetry_data()
    return {
        "telemetry": data is not None,
        "path": data.request.url.path if data is not None and data.request is not None else None,
        "values": data.values if data is not None else None,
    }


app.mount("/traced", traced)
