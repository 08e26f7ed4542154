"""Parsing a caller's JSON with a nesting limit, checked before the parser runs.

CPython's JSON parser recurses on the C stack once per nesting level, and in the sandbox's
wasm stack about a thousand levels overflow it before CPython's recursion guard fires: a
6 KB body would stop the API with a stack overflow. A body nested deeper than the limit
(`App(max_json_depth=...)`, default `MAX_JSON_DEPTH`) is the caller's error instead: 422.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ._errors import RequestValidationError

MAX_JSON_DEPTH = 128

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
_OPENING = b"[{"


class JSONTooDeep(RequestValidationError, ValueError):
    """422: the body nests arrays and objects deeper than the API allows. Also a ValueError,
    as any other unparseable JSON is to `Request.json()`'s callers."""

    def __init__(self, limit: int) -> None:
        super().__init__([{"loc": ["body"], "msg": f"JSON nested deeper than {limit} levels", "input": None}])
        self.limit = limit


def nesting_exceeds(raw: bytes, limit: int) -> bool:
    """Whether arrays and objects in `raw` nest deeper than `limit` (brackets inside strings
    do not count). Cheap for the common case: fewer brackets than the limit."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    depth = 0
    for byte in _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS):
        if byte in _OPENING:
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def loads(raw: bytes | str, max_depth: int, **options: Any) -> Any:
    """`json.loads`, after refusing a document nested deeper than `max_depth`."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if nesting_exceeds(data, max_depth):
        raise JSONTooDeep(max_depth)
    return json.loads(raw, **options)
