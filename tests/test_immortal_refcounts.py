"""The builder makes the snapshot's objects immortal in the component's memory image, and
only where the image holds a live object of the listed type (`builder/immortal_refcounts.py`).

The synthetic components here are a component's top level holding core modules with data
segments, as componentize-py's output does; the sandbox test at the end runs a built app.
"""

from __future__ import annotations

import json
import struct

import pytest

from builder.component_layers import COMPONENT_MAGIC
from builder.immortal_refcounts import IMMORTAL_REFCOUNT, immortalize
from builder.wasm_binary import MAGIC, WasmFormatError, uleb
from runtime import Limits, SandboxRequest

TYPE, OTHER_TYPE = 0x2000, 0x3000


def sleb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        if (value == 0 and not byte & 0x40) or (value == -1 and byte & 0x40):
            return bytes(out + bytes([byte]))
        out.append(byte | 0x80)


def module(*segments: bytes) -> bytes:
    payload = uleb(len(segments)) + b"".join(segments)
    return MAGIC + bytes([11]) + uleb(len(payload)) + payload


def active(offset: int, data: bytes) -> bytes:
    return b"\x00\x41" + sleb(offset) + b"\x0b" + uleb(len(data)) + data


def component(*modules: bytes) -> bytes:
    return COMPONENT_MAGIC + b"".join(bytes([1]) + uleb(len(m)) + m for m in modules)


def header(count: int, kind: int) -> bytes:
    return struct.pack("<iI", count, kind)


def listing(*pairs: tuple[int, int]) -> bytes:
    return b"".join(struct.pack("<II", *pair) for pair in pairs)


def count_at(data: bytes, at: int) -> int:
    return struct.unpack_from("<i", data, at)[0]


def test_only_live_objects_of_the_listed_type_become_immortal():
    image = (header(3, TYPE)                 # 1024: a live object
             + header(0x00123450, TYPE)      # 1032: on a free list: its count's word is a link
             + header(2, OTHER_TYPE)         # 1040: another object than the listing says
             + header(0, TYPE)               # 1048: freed
             + struct.pack("<i", 7))         # 1056: the last word of the segment
    other = module(b"\x01" + uleb(4) + b"pass",                       # passive
                   b"\x00\x23\x01\x0b" + uleb(8) + header(5, TYPE),  # at a shared library's base
                   active(4096, header(9, TYPE)))                   # 4096: another module's object
    built = component(module(active(1024, image)), other)
    pairs = [(1024, TYPE), (1032, TYPE), (1040, TYPE), (1048, TYPE), (1056, TYPE), (4096, TYPE), (9000, TYPE)]
    result, made = immortalize(built, listing(*pairs))
    assert made == 2 and len(result) == len(built)
    at = built.index(image)
    assert [count_at(result, at + offset) for offset in (0, 8, 16, 24, 32)] == [
        IMMORTAL_REFCOUNT, 0x00123450, 2, 0, 7]
    elsewhere = built.rindex(header(9, TYPE))
    assert count_at(result, elsewhere) == IMMORTAL_REFCOUNT
    assert count_at(result, built.index(header(5, TYPE))) == 5  # placed at load time: not in the image
    changed = [i for i in range(len(built)) if built[i] != result[i]]
    assert changed and all(at <= i < at + 4 or elsewhere <= i < elsewhere + 4 for i in changed)
    assert immortalize(result, listing(*pairs)) == (result, 0)  # already immortal: nothing again


def test_an_object_listed_twice_is_set_once_and_an_empty_listing_changes_nothing():
    built = component(module(active(64, header(1, TYPE))))
    result, made = immortalize(built, listing((64, TYPE), (64, TYPE)))
    assert made == 1 and IMMORTAL_REFCOUNT >= 1 << 30
    assert immortalize(built, b"") == (built, 0)


def test_a_truncated_listing_or_an_unknown_segment_is_refused():
    built = component(module(active(64, header(1, TYPE))))
    with pytest.raises(WasmFormatError):
        immortalize(built, b"\x00" * 12)
    with pytest.raises(WasmFormatError):
        immortalize(component(module(b"\x07\x41\x00\x0b\x00")), b"")


def test_in_the_sandbox_the_snapshot_is_immortal_and_a_request_s_objects_are_not(runtime, build_app):
    bundle = build_app("fresh.py")
    answer = runtime.invoke(bundle, SandboxRequest("GET", "/refcounts"), Limits()).response
    assert answer.status == 200, answer.body
    assert json.loads(answer.body) == {"module_state": True, "app": True, "handler": True, "made_now": False}
