"""An API version's configuration besides its limits: the guest's variables and secrets, who
may call it (`auth`: "key" or "public") and its CORS policy.

Stored as JSON in the version's `config` column. Secrets are sealed with Fernet
(`cryptography`) under a key derived from WASMGATE_SECRET_KEY (else a key generated once into
data_dir/secret-key); they are opened only to build the guest's environment, never returned by
any endpoint (descriptions list their names), and their values are masked as `***` in the
output a call's log keeps.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from gateway.settings import Settings
from gateway.state.specs import ConfigSpec

MASK = "***"


class Sealer:
    """Seals and opens secret values."""

    def __init__(self, settings: Settings) -> None:
        configured = settings.secret_key.get_secret_value() if settings.secret_key else None
        self._fernet = Fernet(_fernet_key(configured or _key_from_file(settings.secret_key_file)))

    def seal(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def open(self, sealed: str) -> str | None:
        """The value, or None if it was sealed under another key (WASMGATE_SECRET_KEY changed)."""
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            return None


def _fernet_key(secret: str) -> bytes:
    return base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest())


def _key_from_file(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    return key


def merged(previous: dict[str, Any] | None, spec: ConfigSpec, sealer: Sealer) -> dict[str, Any]:
    """The new version's config: the previous one with what `spec` sets (a null value removes
    a variable or secret)."""
    config = {"variables": {}, "secrets": {}, "auth": "key", "cors": None, **(previous or {})}
    if spec.variables is not None:
        config["variables"] = _apply(config["variables"], spec.variables, lambda value: value)
    if spec.secrets is not None:
        config["secrets"] = _apply(config["secrets"], spec.secrets, sealer.seal)
    if spec.auth is not None:
        config["auth"] = spec.auth
    if spec.cors is not None:
        config["cors"] = spec.cors.model_dump()
    return config


def _apply(current: dict[str, str], changes: dict[str, str | None], encode) -> dict[str, str]:
    result = dict(current)
    for name, value in changes.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = encode(value)
    return result


def public_view(config: dict[str, Any] | None) -> dict[str, Any]:
    """What descriptions show: variables, the names of the secrets only, auth, CORS."""
    config = config or {}
    return {
        "variables": config.get("variables", {}),
        "secrets": sorted(config.get("secrets", {})),
        "auth": config.get("auth", "key"),
        "cors": config.get("cors"),
    }


def guest_env(config: dict[str, Any] | None, sealer: Sealer) -> tuple[dict[str, str], tuple[str, ...]]:
    """The guest's environment, and the secret values to mask in what its calls log."""
    config = config or {}
    env = dict(config.get("variables", {}))
    hidden = []
    for name, sealed in config.get("secrets", {}).items():
        value = sealer.open(sealed)
        if value is not None:
            env[name] = value
            if value:
                hidden.append(value)
    return env, tuple(sorted(hidden, key=len, reverse=True))


def redact(text: str, hidden: tuple[str, ...]) -> str:
    for value in hidden:
        text = text.replace(value, MASK)
    return text
