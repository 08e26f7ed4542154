"""A stand-in `ssl` module for the sandbox: CPython on WASI has no `_ssl`, and the sandbox no
network to speak TLS on.

Libraries import `ssl` at import time whether or not they will ever open a connection
(anyio's asyncio backend, PyJWT's JWKS client, httpx, urllib.request): without it they fail
to import, and the app with them. The stand-in lets them import; every use raises `SSLError`
saying why. A real `ssl`, where one exists, is left alone.

`install()` is called by the guest's entry point at build time, before the app is imported;
host code never calls it.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class SSLError(OSError):
    pass


def _unavailable(*_args: Any, **_kwargs: Any) -> Any:
    raise SSLError("TLS is not available in the sandbox (it has no network)")


def install() -> None:
    try:
        import ssl  # noqa: F401
        return
    except ImportError:
        pass
    module = types.ModuleType("ssl", "A stand-in: CPython on WASI has no ssl module, and the sandbox no network.")
    for name in ("SSLZeroReturnError", "SSLWantReadError", "SSLWantWriteError", "SSLSyscallError", "SSLEOFError",
                 "CertificateError", "SSLCertVerificationError"):
        setattr(module, name, type(name, (SSLError,), {}))
    module.SSLError = SSLError
    module.SSLContext = type("SSLContext", (), {"__init__": _unavailable})
    module.SSLObject = module.SSLSocket = type("SSLObject", (), {"__init__": _unavailable})
    module.MemoryBIO = type("MemoryBIO", (), {"__init__": _unavailable})
    module.Purpose = types.SimpleNamespace(SERVER_AUTH="server", CLIENT_AUTH="client")
    module.create_default_context = _unavailable
    module.OP_IGNORE_UNEXPECTED_EOF = 0
    module.HAS_ALPN = False
    sys.modules["ssl"] = module
