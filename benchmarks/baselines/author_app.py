"""The author's API as FastAPI code, the way users of the replaced design wrote it."""

import hashlib

from fastapi import FastAPI, UploadFile

app = FastAPI()


@app.post("/echo")
async def echo(body: dict):
    return body


@app.post("/upload")
async def upload(file: UploadFile):
    data = await file.read()
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
