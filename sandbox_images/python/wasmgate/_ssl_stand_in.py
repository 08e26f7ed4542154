"""A stand-in `ssl` module for the sandbox: CPython on WASI has no `_ssl`, and the sandbox no
network to speak TLS on.

Libraries import `ssl` at import time whether or not they will ever open a connection
(anyio's asyncio backend, PyJWT, httpx, urllib3 under requests): without it they, and the app
with them, fail to import. The stand-in has the names they read at import (the constants
and enums with CPython's values, the classes, the errors), so they import as on a host
with OpenSSL 3 (the version it reports, as urllib3 requires one); every use that would make
a TLS connection (making a context, wrapping a socket) raises `SSLError` saying why. Plain
HTTP fails the same way as without it: there are no sockets. A real `ssl`, where one
exists, is left alone.

`install()` is called by the guest's entry point at build time, before the app is imported;
host code never calls it.
"""

from __future__ import annotations

import enum
import sys
import types
from typing import Any

_WHY = "TLS is not available in the sandbox (it has no network)"


class SSLError(OSError):
    pass


def _unavailable(*_args: Any, **_kwargs: Any) -> Any:
    raise SSLError(_WHY)


class _Unavailable:
    """A class libraries may subclass or check against; making one raises."""

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        raise SSLError(_WHY)


_ENUMS: dict[str, tuple[type, dict[str, int]]] = {
    "_SSLMethod": (enum.IntEnum, {"PROTOCOL_TLS": 2, "PROTOCOL_TLS_CLIENT": 16, "PROTOCOL_TLS_SERVER": 17}),
    "VerifyMode": (enum.IntEnum, {"CERT_NONE": 0, "CERT_OPTIONAL": 1, "CERT_REQUIRED": 2}),
    "Options": (enum.IntFlag, {
        "OP_ALL": 0x80000050, "OP_NO_SSLv2": 0, "OP_IGNORE_UNEXPECTED_EOF": 128, "OP_NO_TICKET": 16384,
        "OP_NO_COMPRESSION": 131072, "OP_SINGLE_DH_USE": 0, "OP_SINGLE_ECDH_USE": 0,
        "OP_ENABLE_MIDDLEBOX_COMPAT": 1048576, "OP_CIPHER_SERVER_PREFERENCE": 4194304, "OP_NO_SSLv3": 33554432,
        "OP_NO_TLSv1": 67108864, "OP_NO_TLSv1_2": 134217728, "OP_NO_TLSv1_1": 268435456,
        "OP_NO_TLSv1_3": 536870912, "OP_NO_RENEGOTIATION": 1073741824, "OP_LEGACY_SERVER_CONNECT": 4}),
    "VerifyFlags": (enum.IntFlag, {
        "VERIFY_DEFAULT": 0, "VERIFY_CRL_CHECK_LEAF": 4, "VERIFY_CRL_CHECK_CHAIN": 12, "VERIFY_X509_STRICT": 32,
        "VERIFY_ALLOW_PROXY_CERTS": 64, "VERIFY_X509_TRUSTED_FIRST": 32768, "VERIFY_X509_PARTIAL_CHAIN": 524288}),
    "TLSVersion": (enum.IntEnum, {
        "MINIMUM_SUPPORTED": -2, "SSLv3": 768, "TLSv1": 769, "TLSv1_1": 770, "TLSv1_2": 771, "TLSv1_3": 772,
        "MAXIMUM_SUPPORTED": -1}),
}


def _module() -> types.ModuleType:
    module = types.ModuleType("ssl", "A stand-in: CPython on WASI has no ssl module, and the sandbox no network.")
    module.SSLError = SSLError
    for name in ("SSLZeroReturnError", "SSLWantReadError", "SSLWantWriteError", "SSLSyscallError", "SSLEOFError",
                 "SSLCertVerificationError"):
        setattr(module, name, type(name, (SSLError,), {"__module__": "ssl"}))
    module.CertificateError = module.SSLCertVerificationError
    for name in ("SSLContext", "SSLSocket", "SSLObject", "MemoryBIO", "SSLSession"):
        setattr(module, name, type(name, (_Unavailable,), {"__module__": "ssl"}))
    for name in ("create_default_context", "_create_default_https_context", "_create_unverified_context",
                 "get_default_verify_paths", "get_server_certificate", "DER_cert_to_PEM_cert",
                 "PEM_cert_to_DER_cert", "RAND_bytes", "RAND_status", "cert_time_to_seconds"):
        setattr(module, name, _unavailable)
    for enum_name, (kind, members) in _ENUMS.items():
        made = kind(enum_name, members, module="ssl")
        setattr(module, enum_name, made)
        if enum_name != "TLSVersion":
            for name, member in made.__members__.items():  # zero and multi-bit flags included
                setattr(module, name, member)
    module.PROTOCOL_SSLv23 = module.PROTOCOL_TLS
    module.Purpose = enum.Enum("Purpose", {"SERVER_AUTH": "1.3.6.1.5.5.7.3.1", "CLIENT_AUTH": "1.3.6.1.5.5.7.3.2"},
                               module="ssl")
    module.OPENSSL_VERSION = "OpenSSL 3.0.0 (a stand-in: the sandbox has no TLS)"
    module.OPENSSL_VERSION_INFO = (3, 0, 0, 0, 0)
    module.OPENSSL_VERSION_NUMBER = 0x30000000
    for name in ("HAS_SNI", "HAS_ALPN", "HAS_ECDH", "HAS_NEVER_CHECK_COMMON_NAME", "HAS_TLSv1_2", "HAS_TLSv1_3"):
        setattr(module, name, True)
    for name in ("HAS_NPN", "HAS_SSLv2", "HAS_SSLv3", "HAS_TLSv1", "HAS_TLSv1_1", "HAS_PSK", "HAS_PHA"):
        setattr(module, name, False)
    module.CHANNEL_BINDING_TYPES = ["tls-unique"]
    module.socket_error = OSError
    return module


def install() -> None:
    try:
        import ssl  # noqa: F401
        return
    except ImportError:
        pass
    sys.modules["ssl"] = _module()
