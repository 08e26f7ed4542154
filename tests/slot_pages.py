"""Reads what a pooled memory slot holds: its image mappings (/proc/self/maps) and how many of
their pages are private, no longer the image file's own (/proc/self/pagemap): what each reset
of the slot copies back."""

from __future__ import annotations

import struct

PAGE = 4096
# Private writable mappings of a memory image: wasmtime maps a precompiled file's image as it is,
# or an anonymous memfd's when the image is not page-aligned in the file.
_IMAGE_SUFFIXES = (b".cwasm",)
_IMAGE_PREFIXES = (b"memfd:wasm-memory-image",)


def image_mappings() -> list[tuple[int, int, bytes]]:
    """(start, end, offset and inode) of each private writable mapping of a memory image here."""
    with open("/proc/self/maps", "rb") as maps:
        lines = maps.read().split(b"\n")
    found = []
    for line in lines:
        if b" rw-p " not in line:
            continue
        fields = line.split(None, 5)
        if len(fields) < 6:
            continue
        path = fields[5]
        if path.endswith(_IMAGE_SUFFIXES) or path.startswith(_IMAGE_PREFIXES):
            start, end = (int(x, 16) for x in fields[0].split(b"-"))
            found.append((start, end, fields[2] + b" " + fields[4]))
    return found


def private_pages(mappings: list[tuple[int, int, bytes]]) -> int:
    """Present pages of `mappings` that are no longer the image file's own (present, and not
    file-backed)."""
    total = 0
    with open("/proc/self/pagemap", "rb", buffering=0) as pagemap:
        for start, end, _key in mappings:
            pagemap.seek(start // PAGE * 8)
            entries = pagemap.read((end - start) // PAGE * 8)
            total += sum(1 for (e,) in struct.iter_unpack("<Q", entries) if e >> 63 & 1 and not e >> 61 & 1)
    return total
