"""Starlette's own middleware as apps add it: CORS (simple and preflight requests), GZip
above its minimum size, trusted hosts."""
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.middleware.trustedhost import TrustedHostMiddleware

app = FastAPI()
app.add_middleware(GZipMiddleware, minimum_size=500)
app.add_middleware(CORSMiddleware, allow_origins=["https://example.com"], allow_credentials=True,
                   allow_methods=["GET", "POST"], allow_headers=["X-Custom"], expose_headers=["X-Total"])
app.add_middleware(TrustedHostMiddleware, allowed_hosts=["*"])


@app.get("/small")
def small():
    return {"data": "x" * 10}


@app.get("/big")
def big():
    return {"data": "y" * 5000}


@app.post("/echo")
def echo(body: dict):
    return body
