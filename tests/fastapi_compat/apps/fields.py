"""Field: defaults, constraints, aliases, examples; Body(embed=True) and several bodies."""
from typing import Annotated, Union

from fastapi import Body, FastAPI
from pydantic import BaseModel, ConfigDict, Field

app = FastAPI()


class Item(BaseModel):
    name: str = Field(min_length=1, max_length=20)
    description: Union[str, None] = Field(default=None, title="The description", max_length=30)
    price: float = Field(gt=0, description="The price must be greater than zero")
    tax: Union[float, None] = Field(default=None, ge=0, le=100)
    sku: str = Field(default="none", alias="SKU", pattern=r"^[A-Z]{3}-\d+$|^none$")


class User(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    username: str
    full_name: Union[str, None] = None


@app.put("/items/{item_id}")
async def update_item(item_id: int, item: Annotated[Item, Body(embed=True)]):
    return {"item_id": item_id, "item": item.model_dump(by_alias=True)}


@app.put("/both/{item_id}")
async def update_both(item_id: int, item: Item, user: User, importance: Annotated[int, Body(gt=0)]):
    return {"item_id": item_id, "item": item, "user": user, "importance": importance}
