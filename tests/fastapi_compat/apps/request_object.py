"""The Request object: json(), body(), form(), headers, query_params, path_params, url, cookies."""
from fastapi import FastAPI, Request

app = FastAPI()


@app.post("/inspect/{name}")
async def inspect(name: str, request: Request):
    return {
        "method": request.method,
        "path": request.url.path,
        "path_params": dict(request.path_params),
        "query": list(request.query_params.multi_items()),
        "content_type": request.headers.get("content-type"),
        "custom": request.headers.get("x-custom"),
        "cookies": dict(request.cookies),
        "json": await request.json(),
    }


@app.put("/raw")
async def raw(request: Request):
    body = await request.body()
    return {"length": len(body), "starts": body[:10].decode("latin-1")}


@app.post("/form")
async def form(request: Request):
    data = await request.form()
    return {"fields": sorted((k, v) for k, v in data.multi_items() if isinstance(v, str))}


@app.get("/headers")
async def headers(request: Request):
    return {"x-values": request.headers.getlist("x-multi"), "accept": request.headers.get("accept")}
