"""@app.middleware("http"): headers added, short-circuits, the request seen by middleware."""
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

app = FastAPI()


@app.middleware("http")
async def add_process_header(request: Request, call_next):
    if request.headers.get("x-block") == "yes":
        return JSONResponse({"blocked": True}, status_code=403)
    response = await call_next(request)
    response.headers["X-Process"] = "done"
    response.headers["X-Seen-Path"] = request.url.path
    return response


@app.middleware("http")
async def outer(request: Request, call_next):
    response = await call_next(request)
    response.headers["X-Outer"] = "1"
    return response


@app.get("/items/{item_id}")
async def read_item(item_id: int):
    return {"item_id": item_id}


@app.post("/echo")
async def echo(request: Request):
    return {"body": (await request.body()).decode()}
