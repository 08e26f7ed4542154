"""wasmgate: write an HTTP API as plain Python functions; wasmgate serves each request in a
fresh WebAssembly sandbox.

    from wasmgate import App

    app = App()

    @app.get("/hello/{name}")
    def hello(name: str, times: int = 1):
        return {"message": " ".join(["hello " + name] * times)}

Test it without a sandbox with `wasmgate.testing.TestClient`.
"""

from ._errors import HTTPException
from ._params import Body, Form, Header, Path, Query
from ._request import Request
from ._responses import JSONResponse, Response
from ._routing import WARM_METHOD, App
from ._uploads import UploadFile

__all__ = [
    "WARM_METHOD",
    "App",
    "Body",
    "Form",
    "HTTPException",
    "Header",
    "JSONResponse",
    "Path",
    "Query",
    "Request",
    "Response",
    "UploadFile",
]
