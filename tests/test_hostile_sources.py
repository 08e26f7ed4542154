"""Hostile uploaded sources: what an admin-token holder deploys through `POST /v1/apis`.

A real `wasmgate serve` with a 1 MB source cap (`WASMGATE_MAX_SOURCE_MB=1`) is sent zip
bombs (honest and lying about their size, thousands of files), symbolic links, entries
with `..` or absolute paths, names no file system holds or that are both a file and a
directory, encrypted, damaged and mutated archives, a package that would shadow the SDK,
sources over the cap, source text that is not UTF-8 or not Python, and requirements
lines that point at URLs, local paths or other indexes. Each is refused with a 4xx in the
JSON error shape (`BUILD_FAILED` with a message that says what is wrong, or
`PAYLOAD_TOO_LARGE`), never a 500, with no host path in the answer; and nothing is written
outside the build directory: the marker paths the hostile entries aim at never appear,
/etc/passwd is unchanged, and the server's scratch directory is empty after each deploy.
(The builder-level cases are in tests/test_builder.py, requirement parsing in
tests/test_requirements.py; these go through the whole control plane.)
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import secrets
import stat
import struct
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from hypothesis import HealthCheck, given, note, settings, strategies as st

from gateway_support import (  # noqa: F401
    ADMIN,
    HELLO,
    ROOT,
    ServerProcess,
    data_dir_sharing_store,
)

SOURCE_LIMIT = 1 << 20
TIMEOUT = 120  # seconds: a wide bound against a hang (a build that reaches the guest takes ~15 s)
MARKER = f"/tmp/wasmgate-{secrets.token_hex(6)}"  # every escape below aims at a path under this prefix
ESCAPES = [Path(f"{MARKER}-escape"), Path(f"{MARKER}-abs"), Path(f"{MARKER}-link"), Path(f"{MARKER}-name.py")]
PASSWD = Path("/etc/passwd")
NAMES = (f"src-{n}" for n in itertools.count())


@pytest.fixture(scope="module")
def gw(tmp_path_factory, bundle_store):
    root = tmp_path_factory.mktemp("hostile-sources")
    data_dir = data_dir_sharing_store(root / "data", bundle_store)
    server = ServerProcess(data_dir, root / "server.log", ("--workers", "1"), WASMGATE_MAX_SOURCE_MB="1")
    server.start()
    passwd = hashlib.sha256(PASSWD.read_bytes()).hexdigest()
    try:
        with httpx.Client(base_url=server.url, timeout=TIMEOUT, headers=ADMIN) as client:
            yield SimpleNamespace(server=server, client=client, data_dir=data_dir)
    finally:
        server.stop()
    assert hashlib.sha256(PASSWD.read_bytes()).hexdigest() == passwd
    log = server.log_path.read_text(errors="replace")
    assert "unhandled error in" not in log and "Exception in ASGI application" not in log, log[-5000:]


def refused(gw, response: httpx.Response, status: int, code: str, *words: str) -> dict:
    """The answer is the JSON error `code`, its message says `words`, and nothing escaped."""
    assert response.status_code == status, response.text[:3000]
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    error = body["error"]
    assert error["code"] == code, body
    for word in words:
        assert word in error["message"], error["message"]
    for host_detail in (str(gw.data_dir), str(gw.data_dir.resolve()), str(ROOT), sys.prefix, "/tmp/pytest-of-"):
        assert host_detail not in response.text
    assert [path for path in ESCAPES if path.exists() or path.is_symlink()] == []
    assert list((gw.data_dir / "sources").glob("*")) == []  # the build's scratch is gone
    return error


def deploy_file(gw, filename: str, data: bytes, **fields) -> httpx.Response:
    form = {"name": next(NAMES), **{k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}}
    return gw.client.post("/v1/apis", data=form, files={"source": (filename, data, "application/octet-stream")})


def make_zip(*entries, compression=zipfile.ZIP_DEFLATED) -> bytes:
    """A zip of (name or ZipInfo, bytes or text) entries."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def symlink(name: str, target: str) -> tuple[zipfile.ZipInfo, str]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # unix: the mode in the high bits of external_attr
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target


def patched(archive: bytes, local_offset: int, central_offset: int, fmt: str, value: int) -> bytes:
    """The archive with one field of its first entry changed in both its headers."""
    data = bytearray(archive)
    info = zipfile.ZipFile(io.BytesIO(archive)).infolist()[0]
    struct.pack_into(fmt, data, info.header_offset + local_offset, value)
    struct.pack_into(fmt, data, data.rfind(b"PK\x01\x02") + central_offset, value)
    return bytes(data)


# -- bombs ------------------------------------------------------------------------------------


def test_a_zip_bomb_is_refused_before_it_is_expanded(gw):
    bomb = make_zip(("app.py", HELLO), ("data.bin", b"\0" * (64 << 20)))  # 64 MB in ~64 KB
    assert len(bomb) < SOURCE_LIMIT // 8
    error = refused(gw, deploy_file(gw, "bomb.zip", bomb), 422, "BUILD_FAILED", "larger than the limit of 1048576")
    assert error["details"]["limit_bytes"] == SOURCE_LIMIT
    # Many entries, each small, together past the cap.
    many = make_zip(("app.py", HELLO), *((f"d/{n}.bin", b"\0" * 4096) for n in range(300)))
    refused(gw, deploy_file(gw, "many.zip", many), 422, "BUILD_FAILED", "larger than the limit")


def test_a_zip_entry_that_lies_about_its_size_is_refused_as_damaged(gw):
    honest = make_zip(("app.py", b"#" * (8 << 20)))  # 8 MB that says it is 100 bytes
    liar = patched(honest, 22, 24, "<I", 100)  # the uncompressed size, in both headers
    refused(gw, deploy_file(gw, "liar.zip", liar), 422, "BUILD_FAILED", "'app.py' is damaged")


def test_thousands_of_files_are_refused(gw):
    crowd = make_zip(("app.py", HELLO), *((f"m{n}.txt", b"") for n in range(2_001)), compression=zipfile.ZIP_STORED)
    refused(gw, deploy_file(gw, "crowd.zip", crowd), 422, "BUILD_FAILED", "more than 2000 files")


# -- entries that point outside, or are not plain files ---------------------------------------


@pytest.mark.parametrize("name", [
    f"../../../../../../../../../..{MARKER}-escape", f"a/../../../../../../../../..{MARKER}-escape", "../app.py",
    f"{MARKER}-abs", "/etc/passwd", "./../x.py",
], ids=lambda name: name.replace(MARKER, "MARKER"))  # ids equal in every xdist worker
def test_entries_outside_the_archive_are_refused(gw, name):
    archive = make_zip(("app.py", HELLO), (name, b"import os\n"))
    refused(gw, deploy_file(gw, "outside.zip", archive), 422, "BUILD_FAILED", "points outside the archive")


@pytest.mark.parametrize("target", ["/etc/passwd", "../../../../../../../../etc/passwd", f"{MARKER}-link", "."],
                         ids=lambda target: target.replace(MARKER, "MARKER"))
def test_symbolic_links_in_a_zip_are_refused(gw, target):
    for entries in (
        [symlink("app.py", target)],  # the entry module itself
        [("app.py", HELLO), symlink("data", target)],
        [("app.py", HELLO), symlink("out", target), ("out/payload.py", "x = 1\n")],  # a write through the link
    ):
        refused(gw, deploy_file(gw, "links.zip", make_zip(*entries)), 422, "BUILD_FAILED", "is a symbolic link")


@pytest.mark.parametrize("entries, words", [
    ([("app.py", HELLO), ("pkg", "x"), ("pkg/mod.py", "y = 1\n")], ["'pkg' is both a file and a directory"]),
    ([("app.py", HELLO), ("a" * 300 + ".py", "y = 1\n")], ["too long"]),
    ([("app.py", HELLO), ("d/" * 600 + "deep.py", "y = 1\n")], ["too long"]),
    ([("app.py", HELLO), ("wasmgate/__init__.py", "from os import *\n")], ["'wasmgate' is reserved"]),
    ([("app.py", HELLO), ("guest_entry.py", "x = 1\n")], ["'guest_entry' is reserved"]),
])
def test_layouts_no_build_directory_can_hold_are_refused(gw, entries, words):
    refused(gw, deploy_file(gw, "layout.zip", make_zip(*entries)), 422, "BUILD_FAILED", *words)


def test_encrypted_damaged_and_unsupported_entries_are_refused(gw):
    plain = make_zip(("app.py", HELLO))
    encrypted = patched(plain, 6, 8, "<H", 0x1)
    refused(gw, deploy_file(gw, "secret.zip", encrypted), 422, "BUILD_FAILED", "'app.py' is encrypted")
    method = patched(plain, 8, 10, "<H", 99)  # AES, which zipfile cannot read
    refused(gw, deploy_file(gw, "aes.zip", method), 422, "BUILD_FAILED", "compression method 99")
    damaged = bytearray(plain)
    info = zipfile.ZipFile(io.BytesIO(plain)).infolist()[0]
    start = info.header_offset + 30 + len(info.filename)
    damaged[start : start + 40] = b"\xff" * 40
    refused(gw, deploy_file(gw, "damaged.zip", bytes(damaged)), 422, "BUILD_FAILED", "'app.py' is damaged")
    for not_a_zip in (b"PK\x03\x04garbage", plain[: len(plain) // 2], b""):
        refused(gw, deploy_file(gw, "broken.zip", not_a_zip), 422, "BUILD_FAILED", "not a valid zip archive")
    empty = b"PK\x05\x06" + b"\0" * 18
    refused(gw, deploy_file(gw, "empty.zip", empty), 422, "BUILD_FAILED", "cannot tell which module defines `app`")


@st.composite
def mutated_zips(draw) -> bytes:
    """A small valid archive with some of its bytes changed, cut or repeated."""
    entries = [("app.py", HELLO), ("pkg/__init__.py", ""), ("pkg/data.txt", "x" * draw(st.integers(0, 300)))]
    data = bytearray(make_zip(*entries, compression=draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))))
    for _ in range(draw(st.integers(1, 6))):
        where = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["set", "cut", "insert", "truncate"]))
        if action == "set":
            data[where] = draw(st.integers(0, 255))
        elif action == "cut":
            del data[where : where + draw(st.integers(1, 16))]
        elif action == "insert":
            data[where:where] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[where:]
        if not data:
            break
    return bytes(data)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(archive=mutated_zips())
def test_a_mutated_archive_is_a_build_failure_never_a_gateway_failure(gw, archive):
    note(repr(archive))
    # The requirements fail to parse: an archive that still reads stops there, before any build.
    response = deploy_file(gw, "mutated.zip", archive, requirements="-e .")
    refused(gw, response, 422, "BUILD_FAILED")


# -- sizes ------------------------------------------------------------------------------------


def test_sources_over_the_cap_are_413_before_they_are_read(gw):
    big = HELLO.encode() + b"#" * SOURCE_LIMIT
    error = refused(gw, deploy_file(gw, "app.py", big), 413, "PAYLOAD_TOO_LARGE", "deploy request")
    assert error["details"] == {"limit_bytes": SOURCE_LIMIT}
    response = gw.client.post("/v1/apis", json={"name": next(NAMES), "source": HELLO + "#" * SOURCE_LIMIT})
    refused(gw, response, 413, "PAYLOAD_TOO_LARGE")
    noise = ("noise.bin", secrets.token_bytes(SOURCE_LIMIT))
    incompressible = make_zip(("app.py", HELLO), noise, compression=zipfile.ZIP_STORED)
    refused(gw, deploy_file(gw, "noise.zip", incompressible), 413, "PAYLOAD_TOO_LARGE")


# -- text that is not UTF-8, or not Python ----------------------------------------------------


@pytest.mark.parametrize("data, words", [
    ("from wasmgate import App\napp = App()\n# café\n".encode("latin-1"), ["app.py line 3", "byte 0xe9", "UTF-8"]),
    (b"\xff\xfefrom wasmgate import App\n", ["app.py line 1", "byte 0xff"]),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", ["app.py line 3", "null bytes"]),
    (b"# -*- coding: klingon -*-\nx = 1\n", ["app.py", "unknown encoding: klingon"]),
    (b"x = 1\x00\n", ["app.py line 1", "null bytes"]),
])
def test_source_text_that_cpython_cannot_read_is_refused_naming_file_and_line(gw, data, words):
    refused(gw, deploy_file(gw, "app.py", data), 422, "BUILD_FAILED", *words)
    zipped = make_zip(("app.py", HELLO), ("helper.py", data))  # the same as a module of a package
    in_helper = [word.replace("app.py", "helper.py") for word in words]
    refused(gw, deploy_file(gw, "pkg.zip", zipped), 422, "BUILD_FAILED", *in_helper)
    if b"\0" in data or b"klingon" in data:  # as JSON text the source is UTF-8: only these can be wrong there
        response = gw.client.post("/v1/apis", json={"name": next(NAMES), "source": data.decode("latin-1")})
        refused(gw, response, 422, "BUILD_FAILED", *words)


def test_a_py_file_that_is_not_python_fails_its_build_naming_the_file(gw):
    # Valid UTF-8, not Python: only the guest's compiler can tell (one real build attempt).
    response = deploy_file(gw, "app.py", b"<html><body>this is not Python</body></html>\n")
    error = refused(gw, response, 422, "BUILD_FAILED", "syntax error in app.py line 1")
    assert "reading source app.py" in error["details"]["log"]


def test_hostile_but_legal_names_stay_inside_the_build_directory(gw):
    # Names Linux takes as they are: they must land in the build directory, not be interpreted.
    names = ["..\\..\\..\\..\\tmp\\" + Path(f"{MARKER}-escape").name, "C:\\Windows\\x.py", "....", "a b/c d.txt",
             "…/ünï.txt", "-rf", "~", "$HOME", "x\ny"]
    archive = make_zip(("app.py", "raise RuntimeError('stop the build here')\n"), *((name, b"data") for name in names))
    response = deploy_file(gw, "names.zip", archive)
    error = refused(gw, response, 422, "BUILD_FAILED", "RuntimeError: stop the build here")
    assert 'File "/0/app.py", line 1' in error["details"]["guest_traceback"]
    assert not list(Path("/tmp").glob(Path(MARKER).name + "*"))


def test_the_upload_s_own_file_name_cannot_place_it(gw):
    for filename in (f"../../../../../../..{MARKER}-name.py", f"..\\..\\..\\..{MARKER}-name.py", f"{MARKER}-name.py"):
        refused(gw, deploy_file(gw, filename, b"x = 1\0\n"), 422, "BUILD_FAILED", "null bytes")
    refused(gw, deploy_file(gw, "../../evil.zip", b"not a zip"), 422, "BUILD_FAILED", "evil.zip is not a valid zip")


# -- requirements ------------------------------------------------------------------------------

REQUIREMENTS = [
    ("https://evil.example/pkg-1.0-py3-none-any.whl", "direct URLs and local paths"),
    ("./x", "direct URLs and local paths"),
    ("/etc", "direct URLs and local paths"),
    ("~/project", "direct URLs and local paths"),
    ("-e .", "editable installs"),
    ("--index-url https://evil.example/simple", "index options"),
    ("--extra-index-url=https://evil.example/simple", "index options"),
    ("-f /tmp", "index options"),
    ("-r /etc/passwd", "nested requirement"),
    ("file:///etc/passwd", "direct URLs and local paths"),
    ("file:/etc/passwd", "not a valid requirement"),
    ("pkg @ file:///etc/passwd", "direct URL requirements"),
    ("git+https://evil.example/repo.git", "direct URLs and local paths"),
    ("six --global-option=--evil", "per-requirement pip options"),
]


@pytest.mark.parametrize("line, words", REQUIREMENTS, ids=[line for line, _ in REQUIREMENTS])
def test_requirements_pointing_elsewhere_are_refused_before_anything_is_fetched(gw, line, words):
    as_json = gw.client.post("/v1/apis", json={"name": next(NAMES), "source": HELLO, "requirements": ["six", line]})
    error = refused(gw, as_json, 422, "BUILD_FAILED", "requirements line 2", words)
    assert error["details"]["line"] == 2 and error["details"]["text"]
    as_field = deploy_file(gw, "hello.py", HELLO.encode(), requirements=f"six\n{line}\n")
    refused(gw, as_field, 422, "BUILD_FAILED", "requirements line 2", words)
    as_file = gw.client.post(
        "/v1/apis",
        data={"name": next(NAMES)},
        files={
            "source": ("hello.py", HELLO.encode(), "text/x-python"),
            "requirements": ("requirements.txt", f"six\n{line}\n".encode()),
        },
    )
    refused(gw, as_file, 422, "BUILD_FAILED", "requirements line 2", words)
