"""Hostile (and honest) API: waiting inside the sandbox. Imports that poll, asyncio, select
and sleeps inside and past the deadline, and waits on nothing."""

import time

from wasmgate import App

app = App()


@app.get("/import/{name}")
def import_module(name: str):
    """asyncio, selectors and subprocess poll once, without waiting, when imported."""
    import importlib

    return {"imported": importlib.import_module(name).__name__}


@app.get("/asyncio/run")
def asyncio_run():
    import asyncio

    async def main():
        values = await asyncio.gather(asyncio.sleep(0.05, "a"), asyncio.sleep(0.01, "b"))
        try:
            await asyncio.wait_for(asyncio.sleep(10), 0.02)
        except TimeoutError:
            values.append("timed out")
        return values

    started = time.monotonic()
    values = asyncio.run(main())
    return {"values": values, "overlapped": time.monotonic() - started < 0.5}


@app.get("/asyncio/handler")
async def async_handler():
    import asyncio

    await asyncio.sleep(0.01)
    task = asyncio.create_task(asyncio.sleep(0, "task"))
    return {"result": await task}


@app.get("/asyncio/sleep")
def asyncio_sleep(seconds: float):
    import asyncio

    asyncio.run(asyncio.sleep(seconds))
    return {"slept": seconds}


@app.get("/asyncio/forever")
def asyncio_forever():
    """Await a future nobody will resolve: the loop has nothing to wait for."""
    import asyncio

    async def main():
        await asyncio.get_running_loop().create_future()

    asyncio.run(main())


@app.get("/select/{seconds}")
def select_nothing(seconds: float):
    import select

    started = time.monotonic()
    select.select([], [], [], seconds)
    return {"waited": round(time.monotonic() - started, 1)}


@app.get("/poll/zero")
def poll_zero():
    import select

    return {"events": select.poll().poll(0)}


@app.get("/poll/stdin")
def poll_stdin():
    """A wait on a real descriptor still goes to WASI, and the host refuses it."""
    import select

    poller = select.poll()
    poller.register(0, select.POLLIN)
    return {"events": poller.poll(5000)}


@app.get("/sleep/{seconds}")
def sleep(seconds: float):
    time.sleep(seconds)
    return {"slept": seconds}


@app.get("/busy-then-sleep")
def busy_then_sleep():
    end = time.monotonic() + 0.2
    while time.monotonic() < end:
        pass
    time.sleep(10)
