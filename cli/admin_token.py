"""`wasmgate admin-token rotate`: replace the admin token of a gateway's data dir.

Run it on the gateway's host (whoever can write its data dir is trusted with it): a new token
is generated, printed once, and its sha256 written to data_dir/admin-token.sha256; running
gateways take it at their next control-plane request, without a restart, and the old token
stops working. This is also how a lost admin token is recovered. A token configured with
WASMGATE_ADMIN_TOKEN is rotated by changing that variable and restarting instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cli.client import say
from gateway.settings import Settings


def register(subcommands: argparse._SubParsersAction) -> None:
    p = subcommands.add_parser("admin-token", help="rotate (or recover) the admin token of a data dir")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    rotate = actions.add_parser("rotate", help="generate a new admin token; the old one stops working")
    rotate.add_argument("--data-dir", type=Path, help="state directory (default ./.wasmgate, WASMGATE_DATA_DIR)")
    rotate.set_defaults(run=_rotate)


def _rotate(args: argparse.Namespace) -> int:
    from gateway.state.accounts import rotate_admin_token  # the database layer: only this command needs it

    settings = Settings(**({"data_dir": args.data_dir} if args.data_dir else {}))
    if os.environ.get("WASMGATE_ADMIN_TOKEN"):
        say("error: WASMGATE_ADMIN_TOKEN is set: the gateway uses that token; change the variable and restart it instead")
        return 1
    if not settings.data_dir.is_dir():
        say(f"error: no data dir at {settings.data_dir} (pass --data-dir)")
        return 1
    token = rotate_admin_token(settings.admin_token_file)
    print(f"new admin token (shown only this once; its hash is in {settings.admin_token_file}):\n")
    print(f"    WASMGATE_ADMIN_TOKEN={token}\n", file=sys.stdout)
    return 0
