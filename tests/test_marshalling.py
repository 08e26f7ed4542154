"""Whatever crosses the host/guest boundary comes back unchanged: JSON, text, bytes, files."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from runtime import Limits, SandboxRequest, Upload

LIMITS = Limits(fuel=20_000_000_000, timeout_ms=20_000, max_response_bytes=64 << 20, memory_bytes=256 << 20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=30,
)
pairs = st.lists(st.tuples(st.text(min_size=1, max_size=20), st.text(max_size=40)), max_size=5)
header_names = st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=20)
relaxed = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def probe(build_app):
    return build_app("probe.py")


@relaxed
@given(value=json_values)
def test_json_values_round_trip(runtime, probe, value):
    body = json.dumps(value).encode()
    response = runtime.invoke(probe, SandboxRequest("POST", "/json", headers=[("content-type", "application/json")], body=body), LIMITS).response
    assert response.status == 200
    assert json.loads(response.body) == value


@relaxed
@given(body=st.binary(max_size=4096))
def test_binary_bodies_round_trip(runtime, probe, body):
    response = runtime.invoke(probe, SandboxRequest("POST", "/echo", body=body), LIMITS).response
    assert response.body == body
    assert response.header("content-type") == "application/octet-stream"


@relaxed
@given(query=pairs, form=pairs, headers=st.lists(st.tuples(header_names, st.text(max_size=40)), max_size=5),
       path=st.text(min_size=0, max_size=30))
def test_text_fields_round_trip(runtime, probe, query, form, headers, path):
    request = SandboxRequest("POST", "/mirror", query=query, headers=headers, form=form)
    seen = json.loads(runtime.invoke(probe, request, LIMITS).response.body)
    assert seen["method"] == "POST"
    assert [tuple(p) for p in seen["query"]] == query
    assert [tuple(p) for p in seen["form"]] == form
    assert [tuple(p) for p in seen["headers"]] == [(k.lower(), v) for k, v in headers]


def test_ten_megabyte_body_from_memory_and_from_a_spooled_file(runtime, probe, tmp_path):
    data = os.urandom(10 << 20)
    assert runtime.invoke(probe, SandboxRequest("POST", "/echo", body=data), LIMITS).response.body == data
    spooled = tmp_path / "body"
    spooled.write_bytes(data)
    assert runtime.invoke(probe, SandboxRequest("POST", "/echo", body=spooled), LIMITS).response.body == data


def test_uploaded_files_arrive_byte_exact(runtime, probe, tmp_path: Path):
    upload_dir = tmp_path / "uploads"
    upload_dir.mkdir()
    blobs = {"a": os.urandom(10 << 20), "b": b"", "c": "h\u00e9llo".encode()}
    uploads = []
    for i, (field, data) in enumerate(blobs.items()):
        (upload_dir / str(i)).write_bytes(data)
        uploads.append(Upload(field, f"{field}.bin", "application/x-test", upload_dir / str(i), len(data)))
    request = SandboxRequest("POST", "/files", headers=[("content-type", "multipart/form-data")],
                             files=uploads, upload_dir=upload_dir)
    seen = json.loads(runtime.invoke(probe, request, LIMITS).response.body)
    assert seen == [
        {"field": f, "filename": f"{f}.bin", "content_type": "application/x-test", "size": len(d),
         "sha256": hashlib.sha256(d).hexdigest()}
        for f, d in blobs.items()
    ]


def test_uploads_outside_the_request_directory_are_refused(runtime, probe, tmp_path: Path):
    (tmp_path / "inside").mkdir()
    stray = tmp_path / "stray"
    stray.write_bytes(b"x")
    request = SandboxRequest("POST", "/files", files=[Upload("f", "f", "text/plain", stray, 1)], upload_dir=tmp_path / "inside")
    with pytest.raises(ValueError, match="not directly inside"):
        runtime.invoke(probe, request, LIMITS)
