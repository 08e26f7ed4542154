"""Union, Literal and discriminated unions in bodies and responses."""
from typing import Annotated, Literal, Union

from fastapi import FastAPI
from pydantic import BaseModel, Field

app = FastAPI()


class Cat(BaseModel):
    pet_type: Literal["cat"]
    meows: int


class Dog(BaseModel):
    pet_type: Literal["dog"]
    barks: float


class Owner(BaseModel):
    pet: Annotated[Union[Cat, Dog], Field(discriminator="pet_type")]
    n: int


class PlaneItem(BaseModel):
    description: str
    type: Literal["plane"] = "plane"
    size: int


class CarItem(BaseModel):
    description: str
    type: Literal["car"] = "car"


items = {
    "item1": {"description": "All my friends drive a low rider", "type": "car"},
    "item2": {"description": "Music is my aeroplane, it's my aeroplane", "type": "plane", "size": 5},
}


@app.post("/owners")
def create_owner(owner: Owner):
    return owner


@app.get("/items/{item_id}", response_model=Union[PlaneItem, CarItem])
async def read_item(item_id: str):
    return items[item_id]


@app.post("/value")
def value(v: Union[int, str, list[int]]):
    return {"v": v, "kind": type(v).__name__}


@app.get("/mode")
def mode(m: Literal["fast", "slow"] = "fast"):
    return {"m": m}
