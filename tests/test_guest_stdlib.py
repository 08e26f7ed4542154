"""Standard-library modules and functions CPython on WASI lacks, provided in the sandbox:
`hashlib.pbkdf2_hmac` (OpenSSL-only since 3.12) with the keys CPython derives elsewhere, an
`ssl` that imports (libraries import it whether or not they connect) and refuses every use,
and name lookups that fail as errors the app can catch."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime import Limits, SandboxRequest
from wasmgate._hashlib_gaps import pbkdf2_hmac

LIMITS = Limits(timeout_ms=20_000)


@settings(max_examples=60, deadline=None)
@given(
    hash_name=st.sampled_from(["sha1", "sha256", "sha512", "md5", "sha3_256", "blake2b"]),
    password=st.binary(max_size=200),
    salt=st.binary(max_size=40),
    iterations=st.integers(1, 40),
    dklen=st.none() | st.integers(1, 150),
)
def test_pbkdf2_derives_the_keys_openssl_derives(hash_name, password, salt, iterations, dklen):
    assert pbkdf2_hmac(hash_name, password, salt, iterations, dklen) == \
        hashlib.pbkdf2_hmac(hash_name, password, salt, iterations, dklen)


def test_pbkdf2_refuses_what_openssl_refuses():
    for args in (("sha256", b"pw", b"s", 0), ("sha256", b"pw", b"s", 1, 0)):
        for function in (pbkdf2_hmac, hashlib.pbkdf2_hmac):
            try:
                function(*args)
            except ValueError:
                continue
            raise AssertionError(f"{function} accepted {args}")


# One app for the three gaps (a build costs ~6 s): each import and lookup below happens at
# import, at build time, as the libraries that need them do theirs.
GAPS_APP = """
import hashlib
import socket
import ssl
import urllib.request  # imports http.client, which looks for ssl
from hashlib import pbkdf2_hmac  # at import: the build must find it
from ssl import SSLContext  # as PyJWT's JWKS client does at import

from wasmgate import App

# urllib3 (under requests) looks a name up when it is imported: at build time. WASI's libc
# kept the network handle it got for it in the snapshot, and the next lookup, in a request,
# stopped the call (SANDBOX_TRAP, "unknown handle index") instead of raising.
try:
    socket.getaddrinfo("localhost", 80)
except OSError as error:
    AT_IMPORT = type(error).__name__

app = App()


@app.get("/hash")
def hash_password(password: str, iterations: int = 1000):
    return {"key": pbkdf2_hmac("sha256", password.encode(), b"pepper", iterations).hex(),
            "listed": "pbkdf2_hmac" in hashlib.__all__}


@app.get("/tls")
def tls():
    try:
        ssl.create_default_context()
    except ssl.SSLError as error:
        return {"refused": str(error), "is_oserror": isinstance(error, OSError)}
    return {"refused": None}


@app.get("/lookup")
def lookup(host: str):
    try:
        socket.getaddrinfo(host, 443)
    except socket.gaierror as error:
        return {"at_import": AT_IMPORT, "error": error.errno == socket.EAI_FAIL}
    return {"resolved": host}
"""


@pytest.fixture(scope="module")
def gaps(build_app):
    return build_app(GAPS_APP)


def test_an_app_importing_pbkdf2_hmac_builds_and_hashes_as_cpython_does(gaps, runtime):
    invocation = runtime.invoke(gaps, SandboxRequest("GET", "/hash", query=[("password", "hunter2")]), LIMITS)
    assert invocation.response.status == 200, invocation.report.stderr
    assert json.loads(invocation.response.body) == {
        "key": hashlib.pbkdf2_hmac("sha256", b"hunter2", b"pepper", 1000).hex(), "listed": True}


def test_libraries_importing_ssl_import_and_tls_says_why_it_is_missing(gaps, runtime):
    invocation = runtime.invoke(gaps, SandboxRequest("GET", "/tls"), LIMITS)
    assert invocation.response.status == 200, invocation.report.stderr
    assert json.loads(invocation.response.body) == {
        "refused": "TLS is not available in the sandbox (it has no network)", "is_oserror": True}


_IMPORTS_WITH_THE_STAND_IN = """
import sys
sys.path.insert(0, {guest!r})
from wasmgate import _ssl_stand_in
sys.modules["ssl"] = _ssl_stand_in._module()  # as in the sandbox, where `import ssl` fails
import http.client, urllib.request  # the stdlib's HTTP clients, which look for ssl
import anyio._backends._asyncio, httpx, urllib3  # libraries that read ssl's names at import
import ssl
assert ssl.CERT_REQUIRED == 2 and ssl.OP_NO_SSLv2 == 0 and ssl.TLSVersion.TLSv1_2 == 771
for make in (ssl.create_default_context, ssl.SSLContext, httpx.Client):
    try:
        make()
    except ssl.SSLError as error:
        assert "no network" in str(error)
    else:
        raise AssertionError(f"{{make}} made a TLS context")
print("ok")
"""


def test_libraries_that_read_ssl_at_import_import_with_the_stand_in():
    # Natively, in a process of its own: the stand-in replaces the host's ssl before they import.
    guest = str(Path(__file__).resolve().parent.parent / "sandbox_images" / "python")
    script = _IMPORTS_WITH_THE_STAND_IN.format(guest=guest)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr


def test_a_name_lookup_fails_as_an_error_the_app_catches_even_after_one_at_import(gaps, runtime):
    for host in ("example.com", "127.0.0.1"):
        invocation = runtime.invoke(gaps, SandboxRequest("GET", "/lookup", query=[("host", host)]), LIMITS)
        assert invocation.response.status == 200, invocation.report.stderr
        assert json.loads(invocation.response.body) == {"at_import": "gaierror", "error": True}
