"""The product's front: the HTTP gateway (FastAPI on uvicorn) and the `wasmgate` command line."""
