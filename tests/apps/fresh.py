"""Test app: state that would show if an instance were ever used twice, or warmed by a handler."""

import gc
import sys

from wasmgate import App, Request

app = App()
STATE = {"calls": 0, "catch_all": 0}
# Part of the pre-initialized snapshot: zeroes in every fresh instance.
BUFFER = bytearray(8 << 20)
PAGE = 4096


@app.get("/dirty")
def dirty():
    """Count this call, report what earlier calls left behind, then dirty memory for the next."""
    STATE["calls"] += 1
    seen = sum(1 for i in range(0, len(BUFFER), PAGE) if BUFFER[i] == 0xAB)
    for i in range(0, len(BUFFER), PAGE):
        BUFFER[i] = 0xAB
    grown = bytearray(2 << 20)  # new heap beyond the snapshot
    grown[-1] = 1
    STATE.setdefault("grown", []).append(grown)
    return {"calls": STATE["calls"], "seen_dirty_pages": seen, "grown": len(STATE["grown"])}


@app.post("/echo/{item}")
def echo(item: str, body: dict, q: str = ""):
    """An author's JSON route, as the warm-up never runs it (it runs an app of the SDK's own)."""
    return {"item": item, "q": q, "body": body}


@app.get("/collect")
def collect(run: bool = True):
    """A full collection, or none: what the collector scans shows in the fuel the call burns."""
    return {"collected": gc.collect() if run else 0}


@app.get("/refcounts")
def refcounts():
    """Whether the snapshot's objects are immortal (the builder sets their counts), and one
    made by this request is not."""
    made_now = {"made": [1]}
    return {name: sys.getrefcount(obj) >= 1 << 30
            for name, obj in (("module_state", STATE), ("app", app), ("handler", dirty), ("made_now", made_now))}


@app.route("/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def catch_all(rest: str, request: Request):
    """Matches every path: a warm-up that reached a handler would show here."""
    STATE["calls"] += 1
    STATE["catch_all"] += 1
    return {"rest": rest, "method": request.method, **{k: STATE[k] for k in ("calls", "catch_all")}}
