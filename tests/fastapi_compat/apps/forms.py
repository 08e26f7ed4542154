"""Form fields: urlencoded and multipart, required and optional, constraints, a form model."""
from typing import Annotated

from fastapi import FastAPI, Form
from pydantic import BaseModel

app = FastAPI()


class FormData(BaseModel):
    username: str
    password: str
    remember: bool = False


@app.post("/login/")
async def login(username: Annotated[str, Form()], password: Annotated[str, Form(min_length=3)]):
    return {"username": username, "password_length": len(password)}


@app.post("/model/")
async def login_model(data: Annotated[FormData, Form()]):
    return data


@app.post("/optional/")
async def optional(note: str = Form(default="none"), count: int = Form(default=1)):
    return {"note": note, "count": count}
