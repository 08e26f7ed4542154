"""`hashlib.pbkdf2_hmac` in the sandbox, where CPython on WASI has no OpenSSL.

Since Python 3.12, `hashlib.pbkdf2_hmac` comes only from OpenSSL; CPython on WASI is built
without it, so the function is missing and password hashing written with the standard
library fails with AttributeError. This is PBKDF2 (RFC 8018) over `hmac`, as the standard
library computed it before 3.12 without OpenSSL: the same derived keys for the same
arguments (tested against OpenSSL's), at the cost of the interpreter's speed (each
iteration is two hash updates in C; the call's fuel limit applies as to any work).

`install()` is called by the guest's entry point at build time; host code never calls it.
"""

from __future__ import annotations

import hashlib
from typing import Any

_TRANS_5C = bytes((x ^ 0x5C) for x in range(256))
_TRANS_36 = bytes((x ^ 0x36) for x in range(256))


def pbkdf2_hmac(hash_name: str, password: Any, salt: Any, iterations: int, dklen: int | None = None) -> bytes:
    """Password based key derivation function 2 (PKCS #5 v2.0) with HMAC as pseudorandom function."""
    if not isinstance(hash_name, str):
        raise TypeError(hash_name)
    if not isinstance(password, (bytes, bytearray)):
        password = bytes(memoryview(password))
    if not isinstance(salt, (bytes, bytearray)):
        salt = bytes(memoryview(salt))
    inner, outer = hashlib.new(hash_name), hashlib.new(hash_name)
    blocksize = getattr(inner, "block_size", 64)
    if len(password) > blocksize:
        password = hashlib.new(hash_name, password).digest()
    password = password + b"\x00" * (blocksize - len(password))
    inner.update(password.translate(_TRANS_36))
    outer.update(password.translate(_TRANS_5C))

    def prf(message: bytes) -> bytes:
        inner_copy, outer_copy = inner.copy(), outer.copy()
        inner_copy.update(message)
        outer_copy.update(inner_copy.digest())
        return outer_copy.digest()

    if iterations < 1:
        raise ValueError(iterations)
    if dklen is None:
        dklen = outer.digest_size
    if dklen < 1:
        raise ValueError(dklen)
    key, block = b"", 1
    while len(key) < dklen:
        previous = prf(salt + block.to_bytes(4, "big"))
        mixed = int.from_bytes(previous, "big")
        for _ in range(iterations - 1):
            previous = prf(previous)
            mixed ^= int.from_bytes(previous, "big")
        block += 1
        key += mixed.to_bytes(inner.digest_size, "big")
    return key[:dklen]


def install() -> None:
    if not hasattr(hashlib, "pbkdf2_hmac"):
        hashlib.pbkdf2_hmac = pbkdf2_hmac  # type: ignore[attr-defined]
        hashlib.__all__ += ("pbkdf2_hmac",)
