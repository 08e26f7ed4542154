"""What the commands that talk to a running gateway share: the HTTP client (WASMGATE_URL and
WASMGATE_TOKEN, else WASMGATE_ADMIN_TOKEN), the gateway's JSON errors as one `error: CODE: message` line, tables.

`run(command, args)` runs `command(client, args)`: a refusal by the server, an unreachable
server or a user's mistake found late (CliError) ends as one line on stderr and exit 1,
Ctrl-C as exit 130, never as a traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

import httpx
import orjson

from gateway.settings import get_settings

BUILD_TIMEOUT_S = 900


class CliError(Exception):
    pass


def run(command: Callable[[httpx.Client, argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        with _client() as client:
            return command(client, args)
    except CliError as error:
        say(f"error: {error}")
        return 1
    except httpx.TransportError as error:
        say(f"error: cannot reach the gateway at {get_settings().url} ({error}); set WASMGATE_URL")
        return 1
    except KeyboardInterrupt:
        return 130


def _client() -> httpx.Client:
    settings = get_settings()
    token = settings.token or settings.admin_token
    if token is None:
        raise CliError("set WASMGATE_TOKEN to your account's token (or WASMGATE_ADMIN_TOKEN to the admin token)")
    return httpx.Client(
        base_url=settings.url,
        headers={"Authorization": f"Bearer {token.get_secret_value()}"},
        timeout=httpx.Timeout(30, read=BUILD_TIMEOUT_S),
    )


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def check(response: httpx.Response) -> Any:
    """The answer's JSON (None when empty), or CliError with the gateway's error."""
    if response.is_success:
        return response.json() if response.content else None
    response.read()
    raise CliError(error_text(response.status_code, json_or_text(response)))


def json_or_text(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def error_text(status: int, body: Any) -> str:
    """`CODE: message`, then a build's file, line, guest traceback or log on the lines below."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return f"HTTP {status}: {body}"
    text = f"{error.get('code')}: {error.get('message')}"
    details = error.get("details") or {}
    for name in ("file", "line", "guest_traceback", "errors"):
        if name in details:
            text += f"\n  {name}: {details[name]}"
    if details.get("log") and "guest_traceback" not in details:
        text += "\n" + str(details["log"])[-4000:]
    return text


def print_json(value: Any) -> None:
    print(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def table(rows: list[tuple[Any, ...]]) -> None:
    cells = [tuple("" if cell is None else str(cell) for cell in row) for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def delete_confirmed(client: httpx.Client, what: str, path: str, yes: bool, done: str) -> int:
    """`DELETE path` once `delete {what}` is confirmed (see `confirmed`), then print `done`."""
    if not confirmed(f"delete {what}", yes):
        say("not deleted")
        return 1
    check(client.delete(path))
    print(done)
    return 0


def confirmed(question: str, yes: bool) -> bool:
    """True with --yes; else asks on a terminal, and refuses (CliError) without one."""
    if yes:
        return True
    if not sys.stdin.isatty():
        raise CliError(f"{question}: add --yes to confirm (no terminal to ask on)")
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False
