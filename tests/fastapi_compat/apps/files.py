"""Files: bytes = File(), UploadFile (read, seek, size, filename, content_type, .file), lists."""
import hashlib
from typing import Annotated, Union

from fastapi import FastAPI, File, UploadFile

app = FastAPI()


@app.post("/files/")
async def create_file(file: Annotated[bytes, File()]):
    return {"file_size": len(file), "sha256": hashlib.sha256(file).hexdigest()}


@app.post("/uploadfile/")
async def create_upload_file(file: UploadFile):
    head = await file.read(4)
    await file.seek(0)
    whole = await file.read()
    await file.close()
    return {
        "filename": file.filename,
        "content_type": file.content_type,
        "size": file.size,
        "head": head.decode("latin-1"),
        "sha256": hashlib.sha256(whole).hexdigest(),
    }


@app.post("/sync-file/")
def sync_file(file: UploadFile = File(...)):
    data = file.file.read()
    return {"filename": file.filename, "lines": data.count(b"\n")}


@app.post("/uploadfiles/")
async def create_upload_files(files: list[UploadFile]):
    return {"filenames": [f.filename for f in files], "sizes": [f.size for f in files]}


@app.post("/optional-file/")
async def optional_file(file: Union[UploadFile, None] = None):
    return {"filename": file.filename if file else None}
