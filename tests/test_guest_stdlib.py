"""Standard-library modules and functions CPython on WASI lacks, provided in the sandbox:
`hashlib.pbkdf2_hmac` (OpenSSL-only since 3.12) with the keys CPython derives elsewhere, and
an `ssl` that imports (libraries import it whether or not they connect) and refuses every use."""

from __future__ import annotations

import hashlib
import json

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


def test_an_app_importing_pbkdf2_hmac_builds_and_hashes_as_cpython_does(build_app, runtime):
    bundle = build_app("""
        import hashlib
        from hashlib import pbkdf2_hmac  # at import: the build must find it

        from wasmgate import App

        app = App()


        @app.get("/hash")
        def hash_password(password: str, iterations: int = 1000):
            return {"key": pbkdf2_hmac("sha256", password.encode(), b"pepper", iterations).hex(),
                    "listed": "pbkdf2_hmac" in hashlib.__all__}
    """)
    invocation = runtime.invoke(bundle, SandboxRequest("GET", "/hash", query=[("password", "hunter2")]), LIMITS)
    assert invocation.response.status == 200, invocation.report.stderr
    assert json.loads(invocation.response.body) == {
        "key": hashlib.pbkdf2_hmac("sha256", b"hunter2", b"pepper", 1000).hex(), "listed": True}


def test_libraries_importing_ssl_import_and_tls_says_why_it_is_missing(build_app, runtime):
    bundle = build_app("""
        import ssl
        import urllib.request  # imports http.client, which looks for ssl
        from ssl import SSLContext  # as PyJWT's JWKS client does at import

        from wasmgate import App

        app = App()


        @app.get("/tls")
        def tls():
            try:
                ssl.create_default_context()
            except ssl.SSLError as error:
                return {"refused": str(error), "is_oserror": isinstance(error, OSError)}
            return {"refused": None}
    """)
    invocation = runtime.invoke(bundle, SandboxRequest("GET", "/tls"), LIMITS)
    assert invocation.response.status == 200, invocation.report.stderr
    assert json.loads(invocation.response.body) == {
        "refused": "TLS is not available in the sandbox (it has no network)", "is_oserror": True}
