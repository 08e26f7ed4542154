"""async handlers: asyncio.gather, sleep, wait_for, create_task, async dependencies."""
import asyncio
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException

app = FastAPI()


async def slow_double(x: int, delay: float) -> int:
    await asyncio.sleep(delay)
    return x * 2


async def async_dep(n: int = 3) -> list[int]:
    return await asyncio.gather(*(slow_double(i, 0.001 * i) for i in range(n)))


@app.get("/gather")
async def gather(values: Annotated[list[int], Depends(async_dep)]):
    return {"values": values}


@app.get("/wait-for")
async def wait_for(delay: float = 0.0, timeout: float = 0.5):
    try:
        return {"value": await asyncio.wait_for(slow_double(21, delay), timeout)}
    except asyncio.TimeoutError:
        raise HTTPException(status_code=504, detail="too slow")


@app.get("/tasks")
async def tasks(n: int = 4):
    created = [asyncio.create_task(slow_double(i, 0.001)) for i in range(n)]
    done = [await task for task in created]
    return {"done": done, "running_loop": asyncio.get_running_loop().is_running()}


@app.get("/sync")
def sync_handler():
    return {"sync": True}
