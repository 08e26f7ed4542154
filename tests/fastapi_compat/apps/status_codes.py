"""Status codes: decorator status_code, the status module, 204, a Response parameter."""
from fastapi import FastAPI, Response, status
from fastapi.responses import JSONResponse

app = FastAPI()


@app.post("/items/", status_code=201)
async def create_item(name: str):
    return {"name": name}


@app.delete("/items/{item_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_item(item_id: int):
    return None


@app.put("/get-or-create/{item_id}", status_code=200)
def get_or_create(item_id: str, response: Response):
    if item_id not in ("foo", "bar"):
        response.status_code = status.HTTP_201_CREATED
        response.headers["X-Created"] = item_id
        return {"created": item_id}
    return {"found": item_id}


@app.get("/teapot")
def teapot():
    return JSONResponse(status_code=418, content={"message": "I'm a teapot"}, headers={"X-Tea": "earl grey"})


@app.post("/accepted", status_code=status.HTTP_202_ACCEPTED)
def accepted():
    return {"queued": True}
