"""The example API from the README: JSON, path and query parameters, uploads, binary."""

from wasmgate import App, HTTPException, Response, UploadFile

app = App()


@app.get("/hello/{name}")
def hello(name: str, times: int = 1):
    return {"message": " ".join(["hello " + name] * times)}


@app.post("/sum")
def total(body: dict):
    return {"sum": sum(body["values"])}


@app.post("/upload")
def upload(file: UploadFile, label: str):
    data = file.read()
    return {"filename": file.filename, "size": len(data), "label": label, "content_type": file.content_type}


@app.get("/png")
def png():
    return Response(b"\x89PNG\r\n\x1a\n" + bytes(range(256)), media_type="image/png")


@app.get("/missing")
def missing():
    raise HTTPException(404, "no such thing")
