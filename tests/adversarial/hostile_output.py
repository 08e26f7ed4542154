"""Hostile API: answers that are not what HTTP or the host expects (statuses, bodies of
bodiless answers, headers, encodings, forged response records, floods)."""

import sys

from wasmgate import App, Request, Response

app = App()


def forge(**fields):
    """Replace fields of the response record the SDK is about to build (the record type is
    looked up when the handler has returned, so swapping it here forges what crosses)."""
    import wit_world

    real = wit_world.Response

    def forged(status, headers, body, encoding, error):
        values = {"status": status, "headers": headers, "body": body, "encoding": encoding, "error": error}
        values.update(fields)
        return real(values["status"], values["headers"], values["body"], values["encoding"], values["error"])

    wit_world.Response = forged


@app.get("/status/{code}")
def status(code: int):
    """Any status, with a body even where HTTP forbids one (1xx, 204, 304)."""
    return Response(b"a body that must not be sent", status_code=code, media_type="text/plain")


@app.get("/with-body")
def with_body():
    return Response(b"0123456789", media_type="text/plain")


@app.get("/headers/framing")
def framing_headers():
    """Framing the server owns: a wrong Content-Length, chunked, a second status."""
    return Response(b"short", headers=[("content-length", "999"), ("transfer-encoding", "chunked"),
                                        ("connection", "close"), ("x-request-id", "forged")])


@app.get("/headers/injection")
def header_injection():
    """CR/LF/NUL in values and bad names: each would split or smuggle a response."""
    return Response(b"ok", headers=[("x-good", "fine"), ("x-split", "a\r\nset-cookie: stolen=1"),
                                     ("x-nul", "a\x00b"), ("bad name", "v"), ("x-colon:", "v"),
                                     ("x-unicode", "caf\u00e9 \u20ac"), ("", "empty name")])


@app.get("/headers/many")
def many_headers(n: int):
    return Response(b"ok", headers=[(f"x-h{i}", "v" * 64) for i in range(n)])


@app.get("/forged/latin1")
def forged_latin1():
    """Replace the SDK's response record: a latin-1 body holding code points above 255."""
    import wit_world

    forge(body="\u20ac" * 10, encoding=wit_world.BodyEncoding.LATIN1)
    return {"forged": True}


@app.get("/forged/status")
def forged_status():
    """A status that does not fit the record (u16), set past the SDK."""
    forge(status=70000)
    return {"forged": True}


@app.get("/forged/headers")
def forged_headers():
    """Headers that are not pairs of strings."""
    forge(headers=[("x", 1), None])
    return {"forged": True}


@app.get("/forged/error")
def forged_error():
    """A 'traceback' that holds what a crash report would: it stays in the logs."""
    forge(status=200, error="Traceback: forged crash report")
    return {"forged": True}


@app.get("/binary")
def binary():
    return Response(bytes(range(256)) * 4, media_type="application/octet-stream")


@app.get("/flood/stdout")
def flood_stdout(mb: int):
    chunk = "z" * 65535
    for _ in range(mb * 16):
        sys.stdout.write(chunk + "\n")
    return {"flooded": mb}


@app.get("/big")
def big(mb: int):
    return Response(b"x" * (mb << 20), media_type="application/octet-stream")


@app.post("/echo-size")
def echo_size(request: Request):
    return {"size": len(request.body())}
