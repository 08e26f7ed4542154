"""Argument types shared by the commands: a user's mistake in a flag is a one-line usage error
from argparse (exit 2), never a traceback from deep inside."""

from __future__ import annotations

import argparse
from pathlib import Path


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return path


def rate_limit(text: str) -> tuple[int, float]:
    """`N/SECONDS` (or `N`: per 60 s) as (requests, seconds)."""
    requests, _, seconds = text.partition("/")
    try:
        count, window = int(requests), float(seconds or 60)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes N/SECONDS, e.g. 100/60, got {text!r}") from None
    if count < 1 or not window > 0 or window == float("inf"):
        raise argparse.ArgumentTypeError(f"needs at least 1 request per a positive number of seconds, got {text!r}")
    return count, window
