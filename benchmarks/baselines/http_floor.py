"""The HTTP floor: uvicorn + FastAPI answering the author's routes directly (no isolation,
no proxying): what any gateway in Python costs at least."""

from fastapi import Depends, FastAPI

from benchmarks.baselines import author_app
from benchmarks.baselines.common import check_key, serve

app = FastAPI()
app.include_router(author_app.app.router, prefix="/run/echo", dependencies=[Depends(check_key)])

if __name__ == "__main__":
    serve(app)
