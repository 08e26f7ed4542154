"""Query parameters: defaults, optional, bool conversion, required, lists."""
from typing import Union

from fastapi import FastAPI, Query

app = FastAPI()

fake_items_db = [{"item_name": "Foo"}, {"item_name": "Bar"}, {"item_name": "Baz"}]


@app.get("/items/")
async def read_items(skip: int = 0, limit: int = 10):
    return fake_items_db[skip : skip + limit]


@app.get("/items/{item_id}")
async def read_item(item_id: str, q: Union[str, None] = None, short: bool = False):
    item = {"item_id": item_id}
    if q:
        item.update({"q": q})
    if not short:
        item.update({"description": "This is an amazing item that has a long description"})
    return item


@app.get("/needy/{item_id}")
async def read_user_item(item_id: str, needy: str, skip: int = 0, limit: Union[int, None] = None):
    return {"item_id": item_id, "needy": needy, "skip": skip, "limit": limit}


@app.get("/tags/")
async def read_tags(tag: list[str] = Query(default=[]), n: list[int] = Query(default=[])):
    return {"tag": tag, "n": n}
