"""Metadata for the generated OpenAPI document: title, version, description, tags, summaries,
deprecation, response models. Deployed on its own: its /openapi.json is compared whole."""
from typing import Union

from fastapi import FastAPI
from pydantic import BaseModel, Field

description = """
ChimichangApp API helps you do awesome stuff. 🚀

## Items

You can **read items**.
"""

tags_metadata = [
    {"name": "users", "description": "Operations with users. The **login** logic is also here."},
    {"name": "items", "description": "Manage items. So _fancy_ they have their own docs."},
]

app = FastAPI(title="ChimichangApp", description=description, version="0.0.1", openapi_tags=tags_metadata)


class Item(BaseModel):
    name: str = Field(examples=["Foo"])
    price: float = Field(gt=0)
    description: Union[str, None] = None


@app.get("/users/", tags=["users"], summary="List the users")
async def get_users():
    return [{"name": "Harry"}, {"name": "Ron"}]


@app.post("/items/", tags=["items"], response_model=Item, status_code=201, summary="Create an item",
          response_description="The created item")
async def create_item(item: Item):
    """Create an item with all the information: name, price and description."""
    return item


@app.get("/elements/", tags=["items"], deprecated=True)
async def read_elements(limit: int = 10, q: Union[str, None] = None):
    return [{"item_id": "Foo"}][:limit]
