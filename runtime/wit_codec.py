"""The request and response records of the WIT world `api`, lowered and lifted by hand.

wasmtime-py's generic conversion rebuilds the WIT type objects from the C API on every call
and copies every string twice; this module knows the two records' shapes, so a call costs
a few C allocations per string and nothing else. `tests/test_wit_codec.py` checks it equal
to the generic conversion with property tests.

Everything lifted from the guest is untrusted: `lift_response` checks each value's kind and
range and raises `MalformedResponse` instead of trusting the guest's shape.
"""

from __future__ import annotations

import ctypes
from ctypes import byref, c_char_p, string_at

import wasmtime
import wasmtime._bindings as _b
import wasmtime._ffi as _ffi
from wasmtime.component._enter import enter_wasm

from runtime.capi import holding_gil
from runtime.marshalling import REQUEST_DIR_GUEST, SandboxRequest

Val = _b.wasmtime_component_val_t

_STRING = _ffi.WASMTIME_COMPONENT_STRING.value
_LIST = _ffi.WASMTIME_COMPONENT_LIST.value
_RECORD = _ffi.WASMTIME_COMPONENT_RECORD.value
_TUPLE = _ffi.WASMTIME_COMPONENT_TUPLE.value
_OPTION = _ffi.WASMTIME_COMPONENT_OPTION.value
_ENUM = _ffi.WASMTIME_COMPONENT_ENUM.value
_U16 = _ffi.WASMTIME_COMPONENT_U16.value
_U64 = _ffi.WASMTIME_COMPONENT_U64.value

# Field names as WIT spells them, encoded once.
_REQUEST_FIELDS = (b"method", b"path", b"query", b"headers", b"form", b"files", b"body-size", b"body", b"body-file")
_UPLOAD_FIELDS = (b"field", b"filename", b"content-type", b"path", b"size")
_RESPONSE_FIELDS = ("status", "headers", "body", "encoding", "error")


class MalformedResponse(ValueError):
    """The guest's response value does not have the shape the WIT world promises."""


# -- lowering ------------------------------------------------------------------------------


# The C functions that only allocate or free a value keep the GIL (`capi.holding_gil`): a
# request's lowering makes ~35 such calls of a microsecond or less, and releasing the GIL
# around each let the pool's filler threads take it, so that the request's thread waited for
# them to give it back ~35 times a request.

# Takes the bytes object's buffer directly, without a cast per call.
_vec_new = holding_gil("wasm_byte_vec_new", [ctypes.POINTER(_b.wasm_byte_vec_t), ctypes.c_size_t, c_char_p])
_vallist_new_uninit = holding_gil("wasmtime_component_vallist_new_uninit")
_valtuple_new_uninit = holding_gil("wasmtime_component_valtuple_new_uninit")
_valrecord_new_uninit = holding_gil("wasmtime_component_valrecord_new_uninit")
_val_delete = holding_gil("wasmtime_component_val_delete")


def _set_bytes(vec: _b.wasm_byte_vec_t, data: bytes) -> None:
    _vec_new(byref(vec), len(data), data)


def _set_string(val: Val, text: str) -> None:
    val.kind = _STRING
    _set_bytes(val.of.string, text.encode("utf-8"))


def _set_u64(val: Val, number: int) -> None:
    val.kind = _U64
    val.of.u64 = number


def _set_pairs(val: Val, pairs: list[tuple[str, str]]) -> None:
    val.kind = _LIST
    items = val.of.list
    _vallist_new_uninit(byref(items), len(pairs))
    for i, (first, second) in enumerate(pairs):
        item = items.data[i]
        item.kind = _TUPLE
        pair = item.of.tuple
        _valtuple_new_uninit(byref(pair), 2)
        _set_string(pair.data[0], first)
        _set_string(pair.data[1], second)


def _new_record(val: Val, names: tuple[bytes, ...]) -> list[Val]:
    """Make `val` a record with these field names; returns the field values to fill in."""
    val.kind = _RECORD
    record = val.of.record
    _valrecord_new_uninit(byref(record), len(names))
    entries = record.data
    values = []
    for i, name in enumerate(names):
        entry = entries[i]
        _set_bytes(entry.name, name)
        values.append(entry.val)
    return values


def _set_uploads(val: Val, request: SandboxRequest) -> None:
    val.kind = _LIST
    items = val.of.list
    _vallist_new_uninit(byref(items), len(request.files))
    for i, upload in enumerate(request.files):
        field, filename, content_type, path, size = _new_record(items.data[i], _UPLOAD_FIELDS)
        _set_string(field, upload.field)
        _set_string(filename, upload.filename)
        _set_string(content_type, upload.content_type)
        _set_string(path, f"{REQUEST_DIR_GUEST}/{upload.path.name}")
        _set_u64(size, upload.size)


def _set_option_string(val: Val, text: str | None) -> None:
    val.kind = _OPTION
    if text is None:
        val.of.option = None
        return
    payload = Val()
    _set_string(payload, text)
    val.of.option = _b.wasmtime_component_val_new(byref(payload))  # moves payload's contents


def lower_request(request: SandboxRequest, body: str, body_file: str | None, out: Val) -> None:
    """Write the WIT `request` record for `request` into `out` (freed by the callee's caller).

    `body` is the raw body as latin-1 text when it crosses by value; `body_file` its guest
    path when it crosses as a file.
    """
    method, path, query, headers, form, files, body_size, body_val, body_file_val = _new_record(out, _REQUEST_FIELDS)
    _set_string(method, request.method.upper())
    _set_string(path, request.path)
    _set_pairs(query, request.query)
    _set_pairs(headers, [(name.lower(), value) for name, value in request.headers])
    _set_pairs(form, request.form)
    _set_uploads(files, request)
    _set_u64(body_size, request.body_size())
    _set_string(body_val, body)
    _set_option_string(body_file_val, body_file)


# -- lifting -------------------------------------------------------------------------------


def _bytes_of(vec: _b.wasm_byte_vec_t) -> bytes:
    return string_at(vec.data, vec.size) if vec.size else b""


def _text(val: Val, what: str) -> str:
    if val.kind != _STRING:
        raise MalformedResponse(f"{what} is not a string")
    try:
        return _bytes_of(val.of.string).decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedResponse(f"{what} is not valid UTF-8") from None


def lift_response(val: Val) -> tuple[int, list[tuple[str, str]], str, str, str | None]:
    """(status, headers, body text, encoding name, error) of a WIT `response` record.

    Does not free `val`: the caller deletes it whatever happens here.
    """
    if val.kind != _RECORD or val.of.record.size != len(_RESPONSE_FIELDS):
        raise MalformedResponse("the response is not a response record")
    entries = val.of.record.data
    for i, name in enumerate(_RESPONSE_FIELDS):
        if _bytes_of(entries[i].name) != name.encode():
            raise MalformedResponse(f"response field {i} is not {name!r}")
    status_val, headers_val, body_val, encoding_val, error_val = (entries[i].val for i in range(5))
    if status_val.kind != _U16:
        raise MalformedResponse("status is not a u16")
    if headers_val.kind != _LIST:
        raise MalformedResponse("headers is not a list")
    headers = []
    items = headers_val.of.list
    for i in range(items.size):
        item = items.data[i]
        if item.kind != _TUPLE or item.of.tuple.size != 2:
            raise MalformedResponse("a header is not a pair")
        headers.append((_text(item.of.tuple.data[0], "a header name"), _text(item.of.tuple.data[1], "a header value")))
    if encoding_val.kind != _ENUM:
        raise MalformedResponse("encoding is not an enum")
    encoding = _bytes_of(encoding_val.of.enumeration).decode("ascii", errors="replace")
    if error_val.kind != _OPTION:
        raise MalformedResponse("error is not an option")
    error = _text(error_val.of.option.contents, "error") if error_val.of.option else None
    return status_val.of.u16, headers, _text(body_val, "body"), encoding, error


# -- calling -------------------------------------------------------------------------------


def call(func: wasmtime.component.Func, store: wasmtime.Store, params: list[Val], want_result: bool) -> Val | None:
    """Call a component function with lowered params; the caller deletes the result.

    The params are deleted here, whatever happens.
    """
    args = (Val * len(params))(*params) if params else None
    result = Val() if want_result else None
    try:
        enter_wasm(
            lambda: _b.wasmtime_component_func_call(
                byref(func._func), store._context(), args, len(params), byref(result) if result is not None else None,
                1 if result is not None else 0,
            )
        )
    finally:
        for i in range(len(params)):
            _val_delete(byref(args[i]))
    return result


def delete(val: Val) -> None:
    _val_delete(byref(val))
