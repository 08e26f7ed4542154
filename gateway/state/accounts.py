"""Who calls the control plane: the admin, or an author account by one of its tokens.

The admin token is WASMGATE_ADMIN_TOKEN, else the one whose sha256 is in
data_dir/admin-token.sha256; that file is re-read whenever it changes, so
`wasmgate admin-token rotate` takes effect on a running gateway without a restart.
An account token reads `wga_<token id>_<secret>`; only its sha256 is kept. Tokens are looked
up in the database on each control-plane request (not a hot path), so creating, rotating or
revoking one reaches every process and host at once.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.datastructures import Headers

from gateway.errors import ApiError, not_found
from gateway.settings import Plan, Settings
from gateway.state import auth
from gateway.state.database import Database, NameTaken
from gateway.state.records import AccountRow, KeyRow
from gateway.state.views import iso

TOKEN_PREFIX = "wga"


@dataclass(frozen=True)
class Caller:
    """The admin (`account` None) or an author account."""

    account: AccountRow | None = None

    @property
    def is_admin(self) -> bool:
        return self.account is None

    @property
    def owner(self) -> str | None:
        """The account id APIs it creates belong to (None: the admin's)."""
        return self.account.id if self.account else None

    def may_manage(self, owner: str | None) -> bool:
        return self.is_admin or owner == self.owner


ADMIN = Caller()


class AdminToken:
    """The admin token's digest: configured, or read from its file again when the file changes."""

    def __init__(self, digest: str, file: Path | None) -> None:
        self._digest, self._file = digest, file
        self._seen = self._stamp()

    def _stamp(self) -> tuple[int, int] | None:
        if self._file is None:
            return None
        try:
            stat = self._file.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_ino

    def digest(self) -> str:
        stamp = self._stamp()
        if stamp is not None and stamp != self._seen:
            self._seen = stamp
            self._digest = self._file.read_text().strip()
        return self._digest


def rotate_admin_token(token_file: Path) -> str:
    """Write a new admin token's digest (atomically, mode 0600); return the token."""
    token = secrets.token_urlsafe(32)
    token_file.parent.mkdir(parents=True, exist_ok=True)
    fresh = token_file.with_name(token_file.name + ".new")
    fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(auth.digest(token) + "\n")
    os.replace(fresh, token_file)
    return token


def _new_token(account_id: str) -> tuple[KeyRow, str]:
    token_id = secrets.token_hex(6)
    token = f"{TOKEN_PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
    return KeyRow(token_id, account_id, auth.digest(token), time.time()), token


class Accounts:
    def __init__(self, settings: Settings, db: Database, admin: AdminToken) -> None:
        self.settings, self.db, self.admin = settings, db, admin

    def identify(self, headers: Headers) -> Caller:
        """The caller of a control-plane request, or AUTH_MISSING (401) / AUTH_INVALID (403)."""
        token = auth.bearer_token(headers)
        if token is None:
            raise ApiError(
                401, "AUTH_MISSING", "send the admin token or an account token as `Authorization: Bearer <token>`",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if auth.matches(self.admin.digest(), token):
            return ADMIN
        parts = token.split("_", 2)
        if len(parts) == 3 and parts[0] == TOKEN_PREFIX:
            for row in self.db.account_tokens_by_id(parts[1]):
                if auth.matches(row.digest, token):
                    account = self.db.get_account(row.api_id)
                    if account is not None:
                        return Caller(account)
        raise ApiError(403, "AUTH_INVALID", "the token is not valid")

    def plan(self, name: str | None) -> Plan | None:
        return self.settings.plans.get(name) if name is not None else None

    def create(self, name: str, plan: str | None) -> dict[str, Any]:
        plan = plan or self.settings.default_plan
        if plan not in self.settings.plans:
            known = ", ".join(sorted(self.settings.plans)) or "none (WASMGATE_PLANS)"
            raise ApiError(422, "VALIDATION_ERROR", f"plan: no plan {plan!r}; the plans are: {known}",
                           {"errors": [{"loc": ["plan"], "msg": f"unknown plan {plan!r}"}]})
        account = AccountRow(secrets.token_hex(6), name, plan, time.time())
        token_row, token = _new_token(account.id)
        try:
            self.db.create_account(account, token_row)
        except NameTaken:
            raise ApiError(409, "CONFLICT", f"an account named {name!r} already exists", {"name": name}) from None
        return {**self.describe(account), "token": token, "token_id": token_row.id}

    def describe(self, account: AccountRow) -> dict[str, Any]:
        plan = self.plan(account.plan)
        return {
            "id": account.id,
            "name": account.name,
            "plan": account.plan,
            "limits": plan.model_dump() if plan else None,
            "created_at": iso(account.created_at),
        }

    def get(self, account_id: str) -> AccountRow:
        account = self.db.get_account(account_id)
        if account is None:
            raise not_found(f"no account {account_id}")
        return account

    def list(self) -> list[dict[str, Any]]:
        return [self.describe(account) for account in self.db.accounts()]

    def tokens(self, account_id: str) -> list[dict[str, Any]]:
        self.get(account_id)
        return [
            {"id": t.id, "prefix": f"{TOKEN_PREFIX}_{t.id}", "created_at": iso(t.created_at)}
            for t in self.db.account_tokens(account_id)
        ]

    def new_token(self, account_id: str, revoke_others: bool) -> dict[str, Any]:
        account = self.get(account_id)
        token_row, token = _new_token(account.id)
        if not self.db.add_account_token(token_row, revoke_others):
            raise not_found(f"no account {account_id}")
        return {"id": token_row.id, "account_id": account.id, "token": token, "created_at": iso(token_row.created_at)}

    def revoke_token(self, account_id: str, token_id: str) -> None:
        self.get(account_id)
        if not self.db.revoke_account_token(account_id, token_id):
            raise not_found(f"account {account_id} has no token {token_id}")

    def delete(self, account_id: str) -> None:
        if not self.db.delete_account(account_id):
            raise not_found(f"no account {account_id}")
