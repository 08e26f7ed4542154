"""Query and path validation: constraints, aliases, patterns, Annotated."""
from typing import Annotated, Union

from fastapi import FastAPI, Path, Query

app = FastAPI()


@app.get("/items/")
async def read_items(
    q: Annotated[Union[str, None], Query(min_length=3, max_length=50, pattern="^fixedquery$")] = None,
):
    results = {"items": [{"item_id": "Foo"}, {"item_id": "Bar"}]}
    if q:
        results.update({"q": q})
    return results


@app.get("/alias/")
async def read_alias(q: Annotated[Union[str, None], Query(alias="item-query")] = None):
    return {"q": q}


@app.get("/items/{item_id}")
async def read_item(
    item_id: Annotated[int, Path(title="The ID of the item to get", gt=0, le=1000)],
    size: Annotated[float, Query(gt=0, lt=10.5)] = 1.0,
):
    return {"item_id": item_id, "size": size}


@app.get("/required/")
async def read_required(q: Annotated[str, Query(min_length=2)]):
    return {"q": q}
