"""fastapi.security: OAuth2 password bearer and API key headers, 401s with WWW-Authenticate."""
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, status
from fastapi.security import APIKeyHeader, HTTPBasic, HTTPBasicCredentials, OAuth2PasswordBearer

app = FastAPI()

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="token")
api_key = APIKeyHeader(name="X-Secret")
basic = HTTPBasic()


@app.get("/items/")
async def read_items(token: Annotated[str, Depends(oauth2_scheme)]):
    return {"token": token}


@app.get("/me")
async def me(token: Annotated[str, Depends(oauth2_scheme)]):
    if token != "alice":
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Invalid authentication credentials",
                            headers={"WWW-Authenticate": "Bearer"})
    return {"user": token}


@app.get("/keyed")
def keyed(key: Annotated[str, Depends(api_key)]):
    return {"key_length": len(key)}


@app.get("/basic")
def read_current_user(credentials: Annotated[HTTPBasicCredentials, Depends(basic)]):
    return {"username": credentials.username, "password": credentials.password}
