"""Makes the snapshot's objects immortal in a component's memory image (PEP 683).

The build lists the snapshot's objects as (address, address of its type) pairs
(`wasmgate._snapshot`); here each one's reference count, the first 32-bit word of the object
on wasm32 (its type is the second), is set to CPython 3.14's immortal value where the image
holds it: in an active data segment of one of the component's core modules. A request then
never writes those counts, so the pages of the snapshot it only reads stay the image's
(measured: closing an instance, which copies back what the instance wrote, -33% CPU for a
FastAPI echo, -12 to -21% for the SDK's).

Each pair is checked against the image before anything is written: the word after the count
must be the listed type, and the count a live object's (1 to 65,535). An object freed after the
listing fails it: on CPython's free lists the count's word holds the list's link (an address),
and overwriting that would send the next allocation of that type to a wild address; a chunk
freed to the allocator holds its links in both words. Anything failing is left as it is.
"""

from __future__ import annotations

import bisect
import struct

from builder.component_layers import COMPONENT_MAGIC
from builder.wasm_binary import MAGIC, WasmFormatError, _sleb, _uleb, sections

# CPython 3.14 on a 32-bit platform: the count it gives objects it makes immortal itself.
IMMORTAL_REFCOUNT = 5 << 28
_LIVE_COUNTS = range(1, 1 << 16)
_CORE_MODULE, _DATA = 1, 11
_I32_CONST, _GLOBAL_GET, _END = 0x41, 0x23, 0x0B


def immortalize(component: bytes, listing: bytes) -> tuple[bytes, int]:
    """`component` with the count of every listed object its image holds set immortal, and how
    many were set."""
    if len(listing) % 8:
        raise WasmFormatError("the snapshot's object listing is truncated")
    image = bytearray(component)
    segments = sorted(_segments(component))
    starts = [offset for offset, _at, _size in segments]
    done = 0
    for address, type_address in struct.iter_unpack("<II", listing):
        at = _locate(segments, starts, address)
        if at is None:
            continue
        count, kind = struct.unpack_from("<iI", image, at)
        if kind == type_address and count in _LIVE_COUNTS:
            struct.pack_into("<i", image, at, IMMORTAL_REFCOUNT)
            done += 1
    return bytes(image), done


def _locate(segments: list[tuple[int, int, int]], starts: list[int], address: int) -> int | None:
    """Where in the component the 8 bytes at memory `address` are, if one segment holds them."""
    index = bisect.bisect_right(starts, address) - 1
    if index < 0:
        return None
    offset, at, size = segments[index]
    if address + 8 > offset + size:
        return None
    return at + address - offset


def _segments(component: bytes) -> list[tuple[int, int, int]]:
    """(memory offset, position in `component`, length) of each active data segment at a
    constant offset, in every core module the component defines."""
    found = []
    for section, start, end in sections(component, COMPONENT_MAGIC):
        if section != _CORE_MODULE:
            continue
        module = component[start:end]
        for inner, payload, _payload_end in sections(module, MAGIC):
            if inner == _DATA:
                found += [(offset, start + at, size) for offset, at, size in _data_segments(module, payload)]
    return found


def _data_segments(module: bytes, at: int) -> list[tuple[int, int, int]]:
    count, at = _uleb(module, at)
    found = []
    for _ in range(count):
        flags, at = _uleb(module, at)
        if flags == 1:  # passive: no place in memory
            size, at = _uleb(module, at)
            at += size
            continue
        memory = 0
        if flags == 2:
            memory, at = _uleb(module, at)
        elif flags != 0:
            raise WasmFormatError(f"unknown data segment kind {flags}")
        offset = None
        if module[at] == _I32_CONST:
            offset, at = _sleb(module, at + 1)
        elif module[at] == _GLOBAL_GET:  # a shared library's segment, placed at load time
            _index, at = _uleb(module, at + 1)
        else:
            raise WasmFormatError(f"unknown data segment offset (opcode {module[at]:#x})")
        if module[at] != _END:
            raise WasmFormatError("a data segment offset of more than one instruction")
        size, at = _uleb(module, at + 1)
        if offset is not None and memory == 0:
            found.append((offset, at, size))
        at += size
    return found
