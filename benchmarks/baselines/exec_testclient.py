"""The design wasmgate replaces: the author's FastAPI code loaded with exec() into the gateway's
own process, each request proxied to it through starlette's TestClient."""

from pathlib import Path

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.testclient import TestClient

from benchmarks.baselines.common import check_key, serve

SOURCE = (Path(__file__).parent / "author_app.py").read_text()
_HOP = {"host", "content-length", "connection", "x-api-key"}

namespace: dict = {"__name__": "author_app"}
exec(compile(SOURCE, "author_app.py", "exec"), namespace)  # noqa: S102 - the point of this baseline
clients = {"echo": TestClient(namespace["app"])}

app = FastAPI()


@app.api_route("/run/{api}/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
async def run(api: str, path: str, request: Request) -> Response:
    check_key(request)
    body = await request.body()
    headers = {k: v for k, v in request.headers.items() if k not in _HOP}
    proxied = await run_in_threadpool(
        clients[api].request, request.method, "/" + path, content=body, headers=headers,
        params=list(request.query_params.multi_items()),
    )
    return Response(proxied.content, proxied.status_code, media_type=proxied.headers.get("content-type"))


if __name__ == "__main__":
    serve(app)
