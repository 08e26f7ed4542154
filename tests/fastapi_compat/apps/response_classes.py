"""Response classes: plain text, HTML, redirects, streaming, files, custom media types, bytes."""
from pathlib import Path

from fastapi import FastAPI, Response
from fastapi.responses import (
    FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, StreamingResponse,
)

app = FastAPI()


@app.get("/text", response_class=PlainTextResponse)
async def text():
    return "Hello World"


@app.get("/html", response_class=HTMLResponse)
async def html():
    return "<html><body><h1>Look ma! HTML!</h1></body></html>"


@app.get("/redirect")
async def redirect():
    return RedirectResponse("/text")


@app.get("/redirect-301")
async def redirect_permanent():
    return RedirectResponse(url="/html", status_code=301)


@app.get("/redirect-away")
async def redirect_away():
    return RedirectResponse("https://example.com/elsewhere")


async def numbers():
    for i in range(5):
        yield f"line {i}\n"


@app.get("/stream")
async def stream():
    return StreamingResponse(numbers(), media_type="text/plain")


@app.get("/legacy/")
def get_legacy_data():
    data = """<?xml version="1.0"?><shampoo><Header>Apply shampoo here.</Header></shampoo>"""
    return Response(content=data, media_type="application/xml")


@app.get("/bytes")
def raw_bytes():
    return Response(content=bytes(range(256)), media_type="application/octet-stream")


@app.get("/json-custom")
def json_custom():
    return JSONResponse({"ünïcode": "✓"}, headers={"Cache-Control": "no-store"})


@app.get("/file")
def own_source():
    return FileResponse(Path(__file__), media_type="text/x-python", filename="response_classes.py")
