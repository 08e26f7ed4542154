"""`wasmgate init NAME`: write a starter API folder (a FastAPI app, its tests, next steps)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path


APP = '''"""{name}: a wasmgate API. Every request runs in a fresh sandbox: nothing is kept between requests."""

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

app = FastAPI(title="{name}", version="0.1")


class Greeting(BaseModel):
    name: str = Field(min_length=1)
    times: int = Field(1, ge=1, le=10)


@app.get("/hello/{{name}}")
def hello(name: str):
    if name == "nobody":
        raise HTTPException(404, "nobody is here")
    return {{"message": f"hello {{name}}"}}


@app.post("/greet")
def greet(greeting: Greeting):
    return {{"message": " ".join([f"hello {{greeting.name}}"] * greeting.times)}}
'''

TEST = '''"""The app's tests, run natively: `python -m pytest` in this folder."""

from fastapi.testclient import TestClient

from app import app

client = TestClient(app)


def test_hello():
    response = client.get("/hello/ann")
    assert response.status_code == 200
    assert response.json() == {"message": "hello ann"}


def test_hello_nobody_is_404():
    assert client.get("/hello/nobody").json() == {"detail": "nobody is here"}


def test_greet():
    response = client.post("/greet", json={"name": "bo", "times": 2})
    assert response.json() == {"message": "hello bo hello bo"}


def test_greet_refuses_invalid_input():
    assert client.post("/greet", json={"name": "bo", "times": 0}).status_code == 422
'''

README = '''# {name}

A wasmgate API: `app.py` is a FastAPI app; each request runs it in a fresh sandbox.

Test it natively (Starlette's TestClient needs `httpx2`; before Starlette 1.0, `httpx`):

    pip install fastapi httpx2 pytest
    cd {name} && python -m pytest

Serve it locally, rebuilt on every save (from the folder that holds `{name}/`; the command
prints the API's URL, key and docs):

    wasmgate dev .

Add pure-Python dependencies to `requirements.txt` in this folder. Deploy it to a gateway
(`WASMGATE_URL` and `WASMGATE_ADMIN_TOKEN` set):

    wasmgate deploy {name}
'''


def register(subcommands: argparse._SubParsersAction) -> None:
    p = subcommands.add_parser("init", help="write a starter API folder: a FastAPI app, its tests, next steps")
    p.add_argument("name", type=Path, help="the folder to create; its name is the API's name")
    p.set_defaults(run=_init)


def _init(args: argparse.Namespace) -> int:
    from gateway.state.specs import NAME_PATTERN  # pydantic models and FastAPI's errors: only `init` needs them

    folder: Path = args.name
    name = folder.resolve().name
    if not re.match(NAME_PATTERN, name):
        return _fail(f"{name!r} cannot name an API: use letters, digits, '.', '_' and '-', from a letter or digit")
    if folder.exists() and not folder.is_dir():
        return _fail(f"{folder} exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()):
        return _fail(f"{folder} exists and is not empty; choose another name")
    folder.mkdir(parents=True, exist_ok=True)
    for filename, text in (("app.py", APP.format(name=name)), ("test_app.py", TEST), ("README.md", README.format(name=name))):
        (folder / filename).write_text(text)
    print(f"wrote {folder}/: app.py, test_app.py, README.md")
    print(f"next: cd {folder} && python -m pytest; then `wasmgate dev` in the folder above serves it")
    return 0


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return 2
