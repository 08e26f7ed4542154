"""The hand-written marshaller (runtime.wit_codec) against wasmtime-py's generic conversion.

Lowering: a request lowered by hand and lifted back by the generic code reads as the record
the generic code would have built. Lifting: a response lowered by the generic code and lifted
by hand reads as what the generic code would lift. Hypothesis draws the values.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st
from wasmtime.component import Record

from runtime import InvalidResponse, SandboxRequest, Upload, wit_codec
from runtime.instance import _body_bytes
from runtime.report import InvocationReport

text = st.text(max_size=40)
pairs = st.lists(st.tuples(text, text), max_size=6)
uploads = st.lists(
    st.builds(
        Upload,
        field=text,
        filename=text,
        content_type=text,
        path=st.from_regex(r"[0-9]{1,4}", fullmatch=True).map(lambda name: Path("/spool") / name),
        size=st.integers(0, 2**64 - 1),
    ),
    max_size=3,
)


@pytest.fixture(scope="module")
def types(runtime, build_app):
    """The generic WIT types of `handle`, read from a real instance."""
    instance = runtime._make_instance(build_app("probe.py"))
    try:
        func_type = instance._handle.type(instance.store)
        yield instance.store, func_type.params[0][1], func_type.result
    finally:
        instance.close()


def _record(**fields) -> Record:
    record = Record()
    for name, value in fields.items():
        setattr(record, name.replace("_", "-"), value)
    return record


@settings(max_examples=150, deadline=None)
@given(
    method=st.sampled_from(["GET", "post", "Patch", "DELETE"]),
    path=text.map(lambda p: "/" + p),
    query=pairs,
    headers=pairs,
    form=pairs,
    files=uploads,
    body=st.one_of(st.binary(max_size=64).map(lambda b: (b, b.decode("latin-1"), None)),
                   st.just((Path("/spool/body"), "", "/request/.body"))),
)
def test_lowering_matches_the_generic_record(types, method, path, query, headers, form, files, body):
    _store, request_type, _ = types
    raw, body_text, body_file = body
    size = len(raw) if isinstance(raw, bytes) else 0
    request = SandboxRequest(method, path, query, headers, form, files, raw if isinstance(raw, bytes) else b"")
    val = wit_codec.Val()
    wit_codec.lower_request(request, body_text, body_file, val)
    lifted = request_type.convert_from_c(val)  # frees val
    assert lifted == _record(
        method=method.upper(), path=path, query=query, headers=[(k.lower(), v) for k, v in headers], form=form,
        files=[_record(field=u.field, filename=u.filename, content_type=u.content_type,
                       path=f"/request/{u.path.name}", size=u.size) for u in files],
        body_size=size, body=body_text, body_file=body_file,
    )


@settings(max_examples=150, deadline=None)
@given(
    status=st.integers(0, 65535),
    headers=pairs,
    body=st.text(max_size=200),
    encoding=st.sampled_from(["utf8", "latin1"]),
    error=st.one_of(st.none(), text),
)
def test_lifting_matches_the_generic_conversion(types, status, headers, body, encoding, error):
    store, _, response_type = types
    val = wit_codec.Val()
    record = _record(status=status, headers=headers, body=body, encoding=encoding, error=error)
    response_type.convert_to_c(store, record, ctypes.pointer(val))
    try:
        assert wit_codec.lift_response(val) == (status, headers, body, encoding, error)
    finally:
        wit_codec.delete(val)


def test_a_value_of_another_shape_is_refused_not_trusted():
    val = wit_codec.Val()
    val.kind = wit_codec._STRING
    wit_codec._set_bytes(val.of.string, b"not a record")
    try:
        with pytest.raises(wit_codec.MalformedResponse):
            wit_codec.lift_response(val)
    finally:
        wit_codec.delete(val)


def test_a_forged_latin1_body_is_the_apis_error_not_the_hosts():
    assert _body_bytes("caf\xe9", "latin1", InvocationReport()) == b"caf\xe9"
    with pytest.raises(InvalidResponse, match="above 255"):
        _body_bytes("\u20ac", "latin1", InvocationReport())
    with pytest.raises(InvalidResponse, match="unknown body encoding"):
        _body_bytes("x", "utf16", InvocationReport())
