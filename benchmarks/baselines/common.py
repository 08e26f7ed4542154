"""What every baseline gateway shares: the API key check and how it is started."""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import HTTPException, Request

API_KEY = "bench-key"


def check_key(request: Request) -> None:
    if request.headers.get("x-api-key") != API_KEY:
        raise HTTPException(401, "missing or invalid API key")


def serve(app) -> None:  # noqa: ANN001
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
