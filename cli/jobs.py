"""`wasmgate jobs [--api NAME] [--state STATE]`: the async jobs the gateway holds, newest first,
a page at a time (`GET /v1/jobs`; `--cursor` takes the next page the listing names)."""

from __future__ import annotations

import argparse
from functools import partial

import httpx

from cli.arguments import positive_int
from cli.client import check, print_json, run, say, table

STATES = ("queued", "running", "succeeded", "failed", "cancelled")


def register(subcommands: argparse._SubParsersAction) -> None:
    p = subcommands.add_parser("jobs", help="list async jobs, of one API (--api) or in one state (--state)")
    p.add_argument("--api", metavar="NAME", help="only this API's jobs (name or id)")
    p.add_argument("--state", choices=STATES, help="only jobs in this state")
    p.add_argument("-n", "--limit", type=positive_int, default=20, help="jobs per page (default 20)")
    p.add_argument("--cursor", help="the page after the one that named this cursor")
    p.add_argument("--json", action="store_true", help="print the raw JSON")
    p.set_defaults(run=partial(run, _jobs))


def _jobs(client: httpx.Client, args: argparse.Namespace) -> int:
    params = {"api": args.api, "state": args.state, "limit": args.limit, "cursor": args.cursor}
    page = check(client.get("/v1/jobs", params={k: v for k, v in params.items() if v is not None}))
    if args.json:
        print_json(page)
        return 0
    jobs = page["jobs"]
    if not jobs:
        print("no jobs")
    else:
        table([("JOB", "API", "STATE", "ATTEMPTS", "CREATED", "UPDATED")] + [
            (j.get("job_id"), j.get("api_id"), j.get("state"), j.get("attempts"), j.get("created_at"), j.get("updated_at"))
            for j in jobs
        ])
    if page.get("next_cursor"):
        say(f"more: wasmgate jobs --cursor {page['next_cursor']}" + "".join(
            f" --{name} {value}" for name, value in (("api", args.api), ("state", args.state)) if value
        ))
    return 0
