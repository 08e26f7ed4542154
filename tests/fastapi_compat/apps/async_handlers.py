"""async handlers: asyncio.gather, sleep, wait_for, create_task, async dependencies; blocking work
handed to a thread (asyncio.to_thread, run_in_executor, a ThreadPoolExecutor)."""
import asyncio
import concurrent.futures
import time
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


def blocking_square(x: int) -> int:
    time.sleep(0.001)  # blocking work, kept off the event loop
    if x < 0:
        raise ValueError("negative")
    return x * x


@app.get("/to-thread/{x}")
async def to_thread(x: int):
    try:
        return {"square": await asyncio.to_thread(blocking_square, x)}
    except ValueError as error:
        raise HTTPException(status_code=400, detail=str(error))


@app.get("/executor/{x}")
async def default_executor(x: int):
    loop = asyncio.get_running_loop()
    return {"square": await loop.run_in_executor(None, blocking_square, x)}


LABELS: list[str] = []


@app.get("/pool")
def pool(n: int = 4):
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, initializer=LABELS.append, initargs=("ready",)) as ex:
        squares = list(ex.map(blocking_square, range(n)))
        nested = ex.submit(lambda: ex.submit(blocking_square, 5)).result().result()
        failed = ex.submit(blocking_square, -1).exception()
    return {"squares": squares, "nested": nested, "failed": repr(failed), "initialized": LABELS.count("ready") >= 1}


@app.get("/pool-in-executor")
async def pool_in_executor():
    with concurrent.futures.ThreadPoolExecutor() as ex:
        return {"square": await asyncio.get_running_loop().run_in_executor(ex, blocking_square, 7)}


@app.get("/loop-in-thread")
async def loop_in_thread():
    """Sync code run in a thread may run a coroutine with asyncio.run: a thread has no running loop."""

    def in_thread() -> dict:
        try:
            asyncio.get_running_loop()
            seen = "a running loop"
        except RuntimeError:
            seen = "no running loop"
        return {"seen": seen, "value": asyncio.run(slow_double(8, 0.001))}

    with concurrent.futures.ThreadPoolExecutor() as ex:
        pooled = ex.submit(in_thread).result()
    return {"to_thread": await asyncio.to_thread(in_thread), "pool": pooled,
            "loop_after": asyncio.get_running_loop().is_running()}
