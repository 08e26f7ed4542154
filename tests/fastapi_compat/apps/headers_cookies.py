"""Header and Cookie parameters: underscore conversion, duplicates, responses that set them."""
from typing import Annotated, Union

from fastapi import Cookie, FastAPI, Header, Response

app = FastAPI()


@app.get("/items/")
async def read_items(user_agent: Annotated[Union[str, None], Header()] = None, x_token: Annotated[list[str], Header()] = []):
    return {"User-Agent": user_agent, "X-Token values": x_token}


@app.get("/strict/")
async def strict(x_key: Annotated[str, Header(min_length=4)]):
    return {"x_key": x_key}


@app.get("/cookies/")
async def read_cookies(ads_id: Annotated[Union[str, None], Cookie()] = None, session: Union[str, None] = Cookie(default=None)):
    return {"ads_id": ads_id, "session": session}


@app.post("/cookie-and-object/")
def create_cookie(response: Response):
    response.set_cookie(key="fakesession", value="fake-cookie-session-value")
    response.headers["X-Cat-Dog"] = "alone in the world"
    return {"message": "Come to the dark side, we have cookies"}
