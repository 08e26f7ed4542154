"""`wasmgate accounts create NAME | list | delete ID | rotate ID`: author accounts, whose tokens
manage their own APIs on the control plane (admin token required)."""

from __future__ import annotations

import argparse
from functools import partial

import httpx

from cli.client import check, delete_confirmed, print_json, run, table


def register(subcommands: argparse._SubParsersAction) -> None:
    p = subcommands.add_parser("accounts", help="create, list, delete author accounts; rotate their tokens")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    a = actions.add_parser("create", help="create an account and print its token (shown once)")
    a.add_argument("name")
    a.add_argument("--plan", help="one of the server's plans (default: its WASMGATE_DEFAULT_PLAN)")
    a.set_defaults(run=partial(run, _create))

    a = actions.add_parser("list", help="list the accounts")
    a.add_argument("--json", action="store_true", help="print the raw JSON")
    a.set_defaults(run=partial(run, _list))

    a = actions.add_parser("delete", help="delete an account")
    a.add_argument("id")
    a.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    a.set_defaults(run=partial(run, _delete))

    a = actions.add_parser("rotate", help="give an account a new token (shown once), revoking its others")
    a.add_argument("id")
    a.add_argument("--keep-others", action="store_true", help="leave the account's other tokens valid")
    a.set_defaults(run=partial(run, _rotate))


def _create(client: httpx.Client, args: argparse.Namespace) -> int:
    asked = {"name": args.name, "plan": args.plan}
    account = check(client.post("/v1/accounts", json={k: v for k, v in asked.items() if v is not None}))
    print(f"account: {account['id']} ({account['name']})")
    print(f"token:   {account['token']}   (shown only now)")
    return 0


def _list(client: httpx.Client, args: argparse.Namespace) -> int:
    accounts = check(client.get("/v1/accounts"))["accounts"]
    if args.json:
        print_json(accounts)
        return 0
    if not accounts:
        print("no accounts")
        return 0
    table([("ID", "NAME", "PLAN", "CREATED")]
          + [(a["id"], a["name"], a.get("plan"), a.get("created_at")) for a in accounts])
    return 0


def _delete(client: httpx.Client, args: argparse.Namespace) -> int:
    account = f"account {args.id}"
    return delete_confirmed(client, account, f"/v1/accounts/{args.id}", args.yes, f"deleted {account}")


def _rotate(client: httpx.Client, args: argparse.Namespace) -> int:
    token = check(client.post(f"/v1/accounts/{args.id}/tokens", json={"revoke_others": not args.keep_others}))
    print(f"token: {token['token']}   (shown only now)")
    return 0
