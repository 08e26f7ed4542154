"""`wasmgate logs NAME [--follow]`: an API's latest invocations, or its calls as they happen.

Each call is one line (time, request id, version, method and path, status, outcome, fuel,
duration), with its captured stdout and stderr and, for a failed call, why it failed, the
guest's traceback included. `--follow` reads the gateway's live stream
(`GET /v1/apis/{id}/logs?follow=true`, one JSON entry per line) until Ctrl-C.
"""

from __future__ import annotations

import argparse
from functools import partial
from typing import Any, Iterator

import httpx
import orjson

from cli.arguments import positive_int
from cli.client import check, print_json, run

NDJSON = "application/x-ndjson"


def register(subcommands: argparse._SubParsersAction) -> None:
    p = subcommands.add_parser("logs", help="show an API's latest invocations, or follow them live (--follow)")
    p.add_argument("name", help="API name or id")
    p.add_argument("-n", "--limit", type=positive_int, default=20, help="how many of the latest (default 20)")
    p.add_argument("-f", "--follow", action="store_true", help="print calls as they happen, until Ctrl-C")
    p.add_argument("--json", action="store_true", help="print the raw JSON (one object per line with --follow)")
    p.set_defaults(run=partial(run, _logs))


def _logs(client: httpx.Client, args: argparse.Namespace) -> int:
    if args.follow:
        return _follow(client, args)
    logs = check(client.get(f"/v1/apis/{args.name}/logs", params={"limit": args.limit}))["logs"]
    if args.json:
        print_json(logs)
        return 0
    for entry in reversed(logs):
        print_entry(entry)
    return 0


def _follow(client: httpx.Client, args: argparse.Namespace) -> int:
    request = client.build_request(
        "GET", f"/v1/apis/{args.name}/logs", params={"follow": "true"}, headers={"Accept": NDJSON},
        timeout=httpx.Timeout(30, read=None),
    )
    response = client.send(request, stream=True)
    try:
        if not response.is_success:
            check(response)  # raises, with the gateway's error
        for entry in entries(response.iter_lines()):
            if args.json:
                print(orjson.dumps(entry).decode(), flush=True)
            else:
                print_entry(entry)
    except KeyboardInterrupt:
        return 0  # Ctrl-C is how following ends
    finally:
        response.close()
    return 0


def entries(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Log entries from a stream of NDJSON lines or of Server-Sent Events (`data: {...}`);
    SSE comments (keep-alives), event names and blank lines are skipped."""
    for line in lines:
        text = line.strip()
        if text.startswith("data:"):
            text = text[5:].strip()
        if text.startswith("{"):
            yield orjson.loads(text)


def print_entry(entry: dict[str, Any]) -> None:
    print(
        f"{entry['time']}  {entry['request_id'][:12]}  v{entry['version']}  {entry['method']} {entry['path']}"
        f"  {entry['status']} {entry['outcome']}  fuel={entry['fuel_used']}  {entry['duration_ms']:.1f} ms"
    )
    for stream in ("stdout", "stderr", "error"):  # error: why a call failed, the guest's traceback included
        for line in (entry.get(stream) or "").splitlines():
            print(f"    {stream}: {line}")
    print(end="", flush=True)
