"""Secrets: the admin token and API keys, stored only as sha256 and compared in constant time.

An API key reads `wg_<key id>_<secret>`: the key id is public (it names the key in listings
and finds its record), the whole key's sha256 is all the gateway keeps.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from starlette.datastructures import Headers

from gateway.errors import ApiError

KEY_PREFIX = "wg"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def matches(expected_digest: str, presented: str) -> bool:
    return hmac.compare_digest(expected_digest, digest(presented))


@dataclass(frozen=True)
class NewKey:
    id: str
    key: str
    digest: str

    @property
    def prefix(self) -> str:
        return f"{KEY_PREFIX}_{self.id}"


def new_api_key() -> NewKey:
    key_id = secrets.token_hex(6)
    key = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    return NewKey(key_id, key, digest(key))


def key_id_of(key: str) -> str | None:
    """The key id inside a presented key, or None if it is not shaped like one of ours."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1]


def bearer_token(headers: Headers) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def presented_api_key(headers: Headers) -> str | None:
    return headers.get("x-api-key", "").strip() or bearer_token(headers)


def admin_token_digest(configured: str | None, token_file: Path) -> tuple[str, str | None]:
    """The admin token's digest, and the plain token if it was generated just now.

    A configured token (WASMGATE_ADMIN_TOKEN) wins. Otherwise the digest kept in `token_file`
    (mode 0600) is used, and on the very first start a token is generated, its digest kept
    there and the token itself returned so the caller can print it once.
    """
    if configured:
        return digest(configured), None
    if token_file.is_file():
        return token_file.read_text().strip(), None
    token = secrets.token_urlsafe(32)
    token_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(digest(token) + "\n")
    return digest(token), token


class KeyRing:
    """Valid (not revoked) API keys in memory: key id -> (API id, digest). Loaded at start,
    changed only together with the database, so revocation takes effect at once."""

    def __init__(self) -> None:
        self._keys: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()

    def add(self, key_id: str, api_id: str, key_digest: str) -> None:
        with self._lock:
            self._keys[key_id] = (api_id, key_digest)

    def remove(self, key_id: str) -> None:
        with self._lock:
            self._keys.pop(key_id, None)

    def remove_api(self, api_id: str) -> None:
        with self._lock:
            for key_id in [k for k, (owner, _) in self._keys.items() if owner == api_id]:
                del self._keys[key_id]

    def replace_api(self, api_id: str, keys: list[tuple[str, str]]) -> None:
        """Swap in the valid (key id, digest) pairs of one API, in one step."""
        with self._lock:
            fresh = {k: v for k, v in self._keys.items() if v[0] != api_id}
            fresh.update((key_id, (api_id, key_digest)) for key_id, key_digest in keys)
            self._keys = fresh

    def replace_all(self, keys: list[tuple[str, str, str]]) -> None:
        """Swap in the full set of valid (key id, API id, digest) read from the database."""
        fresh = {key_id: (api_id, key_digest) for key_id, api_id, key_digest in keys}
        with self._lock:
            self._keys = fresh

    def api_of(self, presented: str) -> str | None:
        """The API a presented key names (unverified: call `verify` with it)."""
        key_id = key_id_of(presented)
        entry = self._keys.get(key_id) if key_id else None
        return entry[0] if entry else None

    def verify(self, api_id: str, headers: Headers) -> str:
        """The id of the valid key presented for `api_id`, or an AUTH_* ApiError."""
        presented = presented_api_key(headers)
        if presented is None:
            raise ApiError(401, "AUTH_MISSING", "send an API key in the X-API-Key header")
        key_id = key_id_of(presented)
        entry = self._keys.get(key_id) if key_id else None
        # Compare even for an unknown key id, so timing does not tell which ids exist.
        owner, expected = entry or ("", digest(""))
        if not matches(expected, presented) or entry is None or owner != api_id:
            raise ApiError(403, "AUTH_INVALID", "the API key is not valid for this API")
        return key_id
