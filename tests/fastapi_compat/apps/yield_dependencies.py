"""Dependencies with yield: setup and teardown around the request, errors inside them."""
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException

app = FastAPI()

events: list[str] = []


class FakeSession:
    def __init__(self) -> None:
        self.open = True


def get_db():
    db = FakeSession()
    events.append("open")
    try:
        yield db
    finally:
        db.open = False
        events.append("close")


async def get_async_resource():
    events.append("async-setup")
    yield {"resource": "ready"}
    events.append("async-teardown")


def owner_checked(db: Annotated[FakeSession, Depends(get_db)], owner: str = "me"):
    if owner != "me":
        raise HTTPException(status_code=403, detail="Not the owner")
    return db


@app.get("/items/")
def read_items(db: Annotated[FakeSession, Depends(get_db)], res: Annotated[dict, Depends(get_async_resource)]):
    return {"db_open": db.open, "events_so_far": list(events), **res}


@app.get("/owned/")
def read_owned(db: Annotated[FakeSession, Depends(owner_checked)]):
    return {"db_open": db.open}
