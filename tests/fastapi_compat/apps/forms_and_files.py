"""Forms and files in one request."""
from typing import Annotated

from fastapi import FastAPI, File, Form, UploadFile

app = FastAPI()


@app.post("/files/")
async def create_file(
    file: Annotated[bytes, File()],
    fileb: Annotated[UploadFile, File()],
    token: Annotated[str, Form()],
):
    return {
        "file_size": len(file),
        "token": token,
        "fileb_content_type": fileb.content_type,
        "fileb_size": len(await fileb.read()),
    }


@app.post("/profile/")
async def profile(name: Annotated[str, Form()], age: Annotated[int, Form(ge=0)], avatar: UploadFile | None = None):
    return {"name": name, "age": age, "avatar": avatar.filename if avatar else None}
