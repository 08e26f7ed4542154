"""Author accounts over HTTP: `/v1/accounts` (the admin creates, lists and deletes them),
their tokens (`/v1/accounts/{id}/tokens`: the admin or the account itself), and `GET /v1/me`.

`POST /v1/accounts {"name", "plan"?}` answers `{"id", "name", "plan", "token", ...}`: the
token is shown this once (only its sha256 is kept). `POST .../tokens` adds a token (rotation;
`{"revoke_others": true}` revokes the older ones in the same step); `DELETE
.../tokens/{token_id}` revokes one. Deleting an account deletes its APIs.
"""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Depends, Request, Security
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import Response

from gateway.errors import ApiError, from_pydantic, json_response, not_found
from gateway.http.control import caller, identify
from gateway.http.schemas import (
    AUTH_ERRORS,
    BEARER_TOKEN,
    AccountCreated,
    AccountList,
    Me,
    TokenCreated,
    TokenList,
    errors,
    json_body,
)
from gateway.http.schemas import Account as AccountModel
from gateway.services import services
from gateway.state.accounts import Caller
from gateway.state.specs import NAME_PATTERN

router = APIRouter(
    prefix="/v1", dependencies=[Depends(identify), Security(BEARER_TOKEN)], responses=AUTH_ERRORS, tags=["accounts"]
)


class AccountSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME_PATTERN)
    plan: str | None = Field(None, max_length=64)


class TokenSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    revoke_others: bool = False


def _admin(request: Request) -> None:
    if not caller(request).is_admin:
        raise ApiError(403, "FORBIDDEN", "only the admin token manages accounts")


def _self_or_admin(request: Request, account_id: str) -> None:
    who: Caller = caller(request)
    if not who.is_admin and who.owner != account_id:
        raise not_found(f"no account {account_id}")


async def _json(request: Request, model: type[BaseModel]) -> BaseModel:
    try:
        return model.model_validate_json(await request.body() or b"{}")
    except ValidationError as error:
        raise from_pydantic(error) from None


@router.get("/me", response_model=Me)
def me(request: Request) -> Response:
    """Who this token is: the admin, or an account with its plan and APIs."""
    who = caller(request)
    svc = services(request)
    if who.is_admin:
        return json_response({"role": "admin", "account": None, "apis": len(svc.db.list_apis())})
    return json_response(
        {"role": "account", "account": svc.accounts.describe(who.account), "apis": len(svc.db.list_apis(who.owner))}
    )


@router.post(
    "/accounts", status_code=201, response_model=AccountCreated, openapi_extra=json_body(AccountSpec),
    responses=errors(409, 422),
)
async def create_account(request: Request) -> Response:
    _admin(request)
    spec = await _json(request, AccountSpec)
    account = await anyio.to_thread.run_sync(services(request).accounts.create, spec.name, spec.plan)
    return json_response(account, 201)


@router.get("/accounts", response_model=AccountList)
def list_accounts(request: Request) -> Response:
    _admin(request)
    return json_response({"accounts": services(request).accounts.list()})


@router.get("/accounts/{account_id}", response_model=AccountModel, responses=errors(404))
def get_account(request: Request, account_id: str) -> Response:
    _self_or_admin(request, account_id)
    svc = services(request)
    return json_response(svc.accounts.describe(svc.accounts.get(account_id)))


@router.delete("/accounts/{account_id}", status_code=204, responses=errors(404))
def delete_account(request: Request, account_id: str) -> Response:
    _admin(request)
    svc = services(request)
    svc.accounts.get(account_id)
    for api in svc.db.list_apis(account_id):
        svc.deployments.delete(api.id)
    svc.accounts.delete(account_id)
    return Response(status_code=204)


@router.get("/accounts/{account_id}/tokens", response_model=TokenList, responses=errors(404))
def list_tokens(request: Request, account_id: str) -> Response:
    _self_or_admin(request, account_id)
    return json_response({"tokens": services(request).accounts.tokens(account_id)})


@router.post(
    "/accounts/{account_id}/tokens", status_code=201, response_model=TokenCreated,
    openapi_extra={"requestBody": {**json_body(TokenSpec)["requestBody"], "required": False}},
    responses=errors(404, 422),
)
async def new_token(request: Request, account_id: str) -> Response:
    _self_or_admin(request, account_id)
    spec = await _json(request, TokenSpec)
    token = await anyio.to_thread.run_sync(services(request).accounts.new_token, account_id, spec.revoke_others)
    return json_response(token, 201)


@router.delete("/accounts/{account_id}/tokens/{token_id}", status_code=204, responses=errors(404))
def revoke_token(request: Request, account_id: str, token_id: str) -> Response:
    _self_or_admin(request, account_id)
    services(request).accounts.revoke_token(account_id, token_id)
    return Response(status_code=204)
