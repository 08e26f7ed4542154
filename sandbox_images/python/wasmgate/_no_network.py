"""Name lookups inside the sandbox fail in Python, as the host fails them, without reaching WASI.

The sandbox has no network: the host refuses every socket and every name lookup. But WASI's
libc asks the host for its network handle on the first lookup and keeps it; a lookup made
while the app is imported at build time (urllib3, under requests, resolves a name when it
is imported) leaves that handle in the snapshot, where no instance has it, and the next
lookup in a request stopped the whole call (`SANDBOX_TRAP`, "unknown handle index")
instead of raising an error the app could catch. So `getaddrinfo` and the other lookups
raise `socket.gaierror` (EAI_FAIL, what the host answers) here, in Python, at build time
and in requests alike. Sockets need no change: the host refuses to make one
(PermissionError), before any handle is kept.

`install()` is called by the guest's entry point at build time, before the app is imported;
host code never calls it.
"""

from __future__ import annotations

import socket
from typing import Any, NoReturn


def _no_lookup(*_args: Any, **_kwargs: Any) -> NoReturn:
    raise socket.gaierror(socket.EAI_FAIL, "Non-recoverable error (the sandbox has no network)")


def install() -> None:
    for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr", "getnameinfo"):
        setattr(socket, name, _no_lookup)
