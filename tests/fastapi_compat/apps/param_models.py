"""Parameter models (FastAPI 0.115+): a pydantic model for the query, the form, headers or
cookies, `extra="forbid"` refusing unknown fields, as FastAPI's tutorial shows them."""
from typing import Annotated, Literal

from fastapi import Cookie, FastAPI, Form, Header, Query
from pydantic import BaseModel, Field

app = FastAPI()


class FilterParams(BaseModel):
    limit: int = Field(100, gt=0, le=100)
    offset: int = Field(0, ge=0)
    order_by: Literal["created_at", "updated_at"] = "created_at"
    tags: list[str] = []


class StrictFilter(BaseModel):
    model_config = {"extra": "forbid"}

    q: str | None = None


class FormData(BaseModel):
    username: str
    password: str = Field(min_length=3)


class CommonHeaders(BaseModel):
    host: str
    save_data: bool = False
    x_tag: list[str] = []


class Cookies(BaseModel):
    session_id: str
    tracker: str | None = None


@app.get("/items/")
async def read_items(filter_query: Annotated[FilterParams, Query()]):
    return filter_query


@app.get("/strict/")
async def strict(filter_query: Annotated[StrictFilter, Query()]):
    return filter_query


@app.post("/login/")
async def login(data: Annotated[FormData, Form()]):
    return data


@app.get("/headers/")
async def headers(h: Annotated[CommonHeaders, Header()]):
    return {"save_data": h.save_data, "x_tag": h.x_tag}


@app.get("/cookies/")
async def cookies(c: Annotated[Cookies, Cookie()]):
    return c
