"""Request bodies: a pydantic model, with path and query parameters beside it."""
from typing import Union

from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class Item(BaseModel):
    name: str
    description: Union[str, None] = None
    price: float
    tax: Union[float, None] = None


@app.post("/items/")
async def create_item(item: Item):
    item_dict = item.model_dump()
    if item.tax is not None:
        item_dict.update({"price_with_tax": item.price + item.tax})
    return item_dict


@app.put("/items/{item_id}")
async def update_item(item_id: int, item: Item, q: Union[str, None] = None):
    result = {"item_id": item_id, **item.model_dump()}
    if q:
        result.update({"q": q})
    return result


@app.post("/raw/")
async def raw_dict(payload: dict):
    return {"keys": sorted(payload)}


@app.post("/list/")
async def list_body(items: list[Item]):
    return {"total": sum(i.price for i in items), "names": [i.name for i in items]}
