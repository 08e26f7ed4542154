"""HTTPException: detail strings, dicts and lists, custom headers."""
from fastapi import FastAPI, HTTPException

app = FastAPI()

items = {"foo": "The Foo Wrestlers"}


@app.get("/items/{item_id}")
async def read_item(item_id: str):
    if item_id not in items:
        raise HTTPException(status_code=404, detail="Item not found")
    return {"item": items[item_id]}


@app.get("/items-header/{item_id}")
async def read_item_header(item_id: str):
    if item_id not in items:
        raise HTTPException(status_code=404, detail="Item not found", headers={"X-Error": "There goes my error"})
    return {"item": items[item_id]}


@app.get("/structured")
async def structured(kind: str = "dict"):
    if kind == "dict":
        raise HTTPException(status_code=409, detail={"code": "conflict", "ids": [1, 2]})
    raise HTTPException(status_code=400, detail=["a", "b"])


@app.get("/unauthorized")
async def unauthorized():
    raise HTTPException(status_code=401, detail="Not authenticated", headers={"WWW-Authenticate": "Bearer"})
