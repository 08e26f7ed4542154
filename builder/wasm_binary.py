"""The few edits of a WebAssembly binary the builder makes itself: list and rename imports,
and add a `dylink.0` section (what marks a module as a shared library for componentize-py's
linker). Everything else in the module is copied byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

MAGIC = b"\0asm\x01\0\0\0"
_CUSTOM, _IMPORT = 0, 2


class WasmFormatError(ValueError):
    pass


def _uleb(data: bytes, at: int) -> tuple[int, int]:
    """An unsigned LEB128 number at `at`, and where it ends."""
    return _leb(data, at, signed=False)


def _sleb(data: bytes, at: int) -> tuple[int, int]:
    """A signed LEB128 number (an `i32.const`'s operand) at `at`, and where it ends."""
    return _leb(data, at, signed=True)


def _leb(data: bytes, at: int, signed: bool) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data):
            raise WasmFormatError("truncated LEB128 number")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return (value - (1 << shift) if signed and byte & 0x40 else value), at


def uleb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _name(data: bytes, at: int) -> tuple[str, int]:
    size, at = _uleb(data, at)
    return data[at : at + size].decode("utf-8"), at + size


def _encoded_name(text: str) -> bytes:
    raw = text.encode("utf-8")
    return uleb(len(raw)) + raw


def sections(data: bytes, magic: bytes = MAGIC) -> Iterator[tuple[int, int, int]]:
    """(id, payload start, payload end) of each section, in order (of a module, or of what
    starts with `magic`: a component's top level)."""
    if not data.startswith(magic):
        raise WasmFormatError("not a WebAssembly module" if magic == MAGIC else "not a WebAssembly component")
    at = len(magic)
    while at < len(data):
        size, start = _uleb(data, at + 1)
        if start + size > len(data):
            raise WasmFormatError("truncated section")
        yield data[at], start, start + size
        at = start + size


def _limits_end(data: bytes, at: int) -> int:
    flags = data[at]
    _, at = _uleb(data, at + 1)
    return _uleb(data, at)[1] if flags & 1 else at


def _import_end(data: bytes, at: int) -> int:
    """Where the import description starting at `at` (its kind byte) ends."""
    kind = data[at]
    if kind == 0:  # function: type index
        return _uleb(data, at + 1)[1]
    if kind == 1:  # table: reftype, limits
        return _limits_end(data, at + 2)
    if kind == 2:  # memory: limits
        return _limits_end(data, at + 1)
    if kind == 3:  # global: valtype, mutability
        return at + 3
    if kind == 4:  # tag: attribute, type index
        return _uleb(data, at + 2)[1]
    raise WasmFormatError(f"unknown import kind {kind}")


def _imports(data: bytes, start: int) -> Iterator[tuple[str, str, int, int]]:
    count, at = _uleb(data, start)
    for _ in range(count):
        module, at = _name(data, at)
        field, at = _name(data, at)
        end = _import_end(data, at)
        yield module, field, at, end
        at = end


def imports(data: bytes) -> list[tuple[str, str]]:
    """(module, name) of every import."""
    return [
        (module, field)
        for section, start, _end in sections(data)
        if section == _IMPORT
        for module, field, _at, _stop in _imports(data, start)
    ]


def rename_imports(data: bytes, renames: Mapping[tuple[str, str], str]) -> bytes:
    """The module with the imports `(module, name)` in `renames` importing the new names."""
    out = bytearray(MAGIC)
    missing = set(renames)
    for section, start, end in sections(data):
        payload = data[start:end]
        if section == _IMPORT:
            entries = list(_imports(data, start))
            body = bytearray(uleb(len(entries)))
            for module, field, at, stop in entries:
                new = renames.get((module, field), field)
                missing.discard((module, field))
                body += _encoded_name(module) + _encoded_name(new) + data[at:stop]
            payload = bytes(body)
        out += bytes([section]) + uleb(len(payload)) + payload
    if missing:
        raise WasmFormatError(f"imports not found: {sorted(missing)}")
    return bytes(out)


def as_shared_library(data: bytes) -> bytes:
    """The module with a `dylink.0` section declaring no memory or table of its own (a
    library of functions only), placed first as the dynamic-linking convention requires."""
    mem_info = uleb(0) * 4  # memory size, alignment, table size, alignment
    payload = _encoded_name("dylink.0") + b"\x01" + uleb(len(mem_info)) + mem_info
    return MAGIC + bytes([_CUSTOM]) + uleb(len(payload)) + payload + data[len(MAGIC) :]
