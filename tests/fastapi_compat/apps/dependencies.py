"""Dependencies: functions, classes, sub-dependencies, caching per request, use_cache=False."""
from typing import Annotated, Union

from fastapi import Depends, FastAPI

app = FastAPI()

calls: list[str] = []


async def common_parameters(q: Union[str, None] = None, skip: int = 0, limit: int = 100):
    return {"q": q, "skip": skip, "limit": limit}


class CommonQueryParams:
    def __init__(self, q: Union[str, None] = None, skip: int = 0, limit: int = 100):
        self.q = q
        self.skip = skip
        self.limit = limit


def query_extractor(q: Union[str, None] = None):
    calls.append("query_extractor")
    return q


def query_or_cookie_extractor(q: Annotated[str, Depends(query_extractor)], last_query: Union[str, None] = None):
    if not q:
        return last_query
    return q


def counter():
    calls.append("counter")
    return len(calls)


@app.get("/items/")
async def read_items(commons: Annotated[dict, Depends(common_parameters)]):
    return commons


@app.get("/users/")
async def read_users(commons: Annotated[CommonQueryParams, Depends()]):
    return {"q": commons.q, "skip": commons.skip, "limit": commons.limit}


@app.get("/nested/")
async def read_query(
    query_or_default: Annotated[str, Depends(query_or_cookie_extractor)],
    again: Annotated[str, Depends(query_extractor)],
):
    return {"q_or_cookie": query_or_default, "again": again, "extractor_calls": calls.count("query_extractor")}


@app.get("/uncached/")
def uncached(a: Annotated[int, Depends(counter)], b: Annotated[int, Depends(counter, use_cache=False)]):
    return {"a": a, "b": b, "counter_calls": calls.count("counter")}
