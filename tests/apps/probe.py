"""Test app: routes that misbehave on purpose, probe the sandbox's walls, and echo bytes."""

import errno
import os
import random
import sys
import time

from wasmgate import App, JSONResponse, Request, Response, UploadFile

app = App()
COUNTER = {"calls": 0}


@app.get("/state")
def state():
    COUNTER["calls"] += 1
    return COUNTER


@app.get("/random")
def draw():
    """What `random` draws first in this instance (the snapshot must not fix the seed)."""
    return {"bits": random.getrandbits(64)}


@app.get("/env")
def env(name: str):
    """One variable of the API's configured environment, also printed (for redaction)."""
    print(f"{name} is {os.environ.get(name)}")
    return {"value": os.environ.get(name)}


@app.post("/echo")
def echo(request: Request):
    return Response(request.body(), media_type=request.header("content-type") or "application/octet-stream")


@app.post("/json")
def json_echo(request: Request):
    return JSONResponse(request.json())


@app.post("/mirror")
def mirror(request: Request):
    """Everything small that crossed the boundary, as the guest saw it."""
    return {"method": request.method, "path": request.path, "query": request.query,
            "headers": request.headers, "form": request.form}


@app.post("/files")
def files(request: Request):
    import hashlib

    return [{"field": f.field, "filename": f.filename, "content_type": f.content_type, "size": f.size,
             "sha256": hashlib.sha256(f.read()).hexdigest()} for f in request.files]


@app.get("/loop")
def loop():
    while True:
        pass


@app.get("/spin")
def spin(seconds: float):
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return {"n": n}


@app.get("/sleep")
def sleep(seconds: float):
    time.sleep(seconds)
    return {"slept": seconds}


@app.get("/select")
def select_wait(seconds: float):
    import select

    select.select([], [], [], seconds)
    return {"waited": seconds}


@app.get("/alloc")
def alloc(mb: int):
    blocks = [bytearray(1 << 20) for _ in range(mb)]
    return {"allocated": len(blocks)}


@app.get("/recurse")
def recurse(depth: int = 10**6, limit: int = 0):
    if limit:
        sys.setrecursionlimit(limit)

    def down(n):
        return n if n == 0 else 1 + down(n - 1)

    return {"depth": down(depth)}


@app.get("/nest")
def nest(depth: int):
    sys.setrecursionlimit(10**7)
    value = []
    for _ in range(depth):
        value = [value]
    return {"len": len(repr(value))}


@app.get("/raise")
def boom():
    raise ValueError("secret internals")


@app.get("/big")
def big(mb: int):
    return Response(b"x" * (mb << 20), media_type="application/octet-stream")


@app.get("/print")
def chatter(kb: int):
    line = "y" * 1023
    for _ in range(kb):
        print(line)
    print("to stderr", file=sys.stderr)
    return {"printed_kb": kb}


@app.get("/exit")
def hard_exit():
    os._exit(3)


@app.get("/lazy")
def lazy():
    import fnmatch  # not imported at build time: comes from the read-only stdlib

    return {"match": fnmatch.fnmatch("wasm.py", "*.py")}


@app.get("/spawn")
def spawn(marker: str):
    """Try to run a host program that would create `marker` on the host."""
    import subprocess

    return {"result": repr(subprocess.run(["/bin/sh", "-c", f"touch {marker}"]))}


@app.get("/walls")
def walls():
    """Try every way out of the sandbox; report what happened."""
    results = {}

    def attempt(name, action):
        print("attempting", name, file=sys.stderr, flush=True)
        try:
            results[name] = {"ok": True, "value": repr(action())[:200]}
        except BaseException as error:  # noqa: BLE001 - we want to see everything
            results[name] = {"ok": False, "error": type(error).__name__}

    attempt("read_passwd", lambda: open("/etc/passwd").read())
    attempt("list_root", lambda: sorted(os.listdir("/")))
    attempt("environ", lambda: dict(os.environ))
    attempt("write_app", lambda: open("/0/app.py", "a").write("x"))
    attempt("write_stdlib", lambda: open("/python/os.py", "a").write("x"))

    def connect():
        import socket

        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)  # a blocking connect would wait in a poll, which the host refuses
        code = s.connect_ex(("127.0.0.1", 6379))
        if code not in (0, errno.EINPROGRESS):
            raise ConnectionRefusedError(code)
        return "connecting"

    attempt("socket", connect)

    attempt("fork", lambda: os.fork())

    def use_ctypes():
        import ctypes

        return ctypes.CDLL(None)

    attempt("ctypes", use_ctypes)

    def thread():
        import threading

        t = threading.Thread(target=lambda: None)
        t.start()
        return "started"

    attempt("thread", thread)
    return results
