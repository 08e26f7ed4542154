"""APIRouter: prefixes, tags, router-level dependencies, nested routers, include_router."""
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException

app = FastAPI()


async def get_token_header(x_token: Annotated[str, Header()]):
    if x_token != "fake-super-secret-token":
        raise HTTPException(status_code=400, detail="X-Token header invalid")


users = APIRouter()


@users.get("/users/", tags=["users"])
async def read_users():
    return [{"username": "Rick"}, {"username": "Morty"}]


@users.get("/users/{username}", tags=["users"])
async def read_user(username: str):
    return {"username": username}


items = APIRouter(
    prefix="/items",
    tags=["items"],
    dependencies=[Depends(get_token_header)],
    responses={404: {"description": "Not found"}},
)
fake_items_db = {"plumbus": {"name": "Plumbus"}, "gun": {"name": "Portal Gun"}}


@items.get("/")
async def read_items():
    return fake_items_db


@items.get("/{item_id}")
async def read_item(item_id: str):
    if item_id not in fake_items_db:
        raise HTTPException(status_code=404, detail="Item not found")
    return {"name": fake_items_db[item_id]["name"], "item_id": item_id}


admin = APIRouter()
nested = APIRouter(prefix="/v1")


@nested.post("/reset", status_code=202)
async def reset():
    return {"message": "Admin getting schwifty"}


admin.include_router(nested)
app.include_router(users)
app.include_router(items)
app.include_router(admin, prefix="/admin", tags=["admin"])


@app.get("/")
async def root():
    return {"message": "Hello Bigger Applications!"}
