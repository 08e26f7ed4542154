"""The commands that manage a running gateway's APIs over HTTP: `deploy`, `apis`, `info`,
`rollback`, `delete`, `pause`, `resume`, `usage` and `keys` (`logs` is cli.logs; jobs and
accounts are cli.platform).

They read the server URL and admin token from WASMGATE_URL and WASMGATE_ADMIN_TOKEN. An API
is named by its name or its id.
"""

from __future__ import annotations

import argparse
import io
import zipfile
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import orjson

from cli.arguments import existing_file, positive_int, rate_limit
from cli.client import CliError, check, delete_confirmed, error_text, json_or_text, print_json, run, say, table


def register(subcommands: argparse._SubParsersAction) -> None:
    p = subcommands.add_parser("deploy", help="deploy a module (.py), package (.zip or directory) to the gateway")
    p.add_argument("source", type=Path)
    p.add_argument("-r", "--requirements", type=existing_file, help="requirements.txt")
    p.add_argument("--name", help="API name (default: the source's file name)")
    p.add_argument("--memory-mb", type=positive_int)
    p.add_argument("--fuel", type=positive_int)
    p.add_argument("--timeout-ms", type=positive_int)
    p.add_argument("--async-timeout-ms", type=positive_int, help="deadline of async jobs (Prefer: respond-async)")
    p.add_argument("--rate-limit", type=rate_limit, metavar="N/SECONDS", help="e.g. 100/60: 100 requests per 60 s per key")
    p.add_argument("--private", action="store_true", help="its OpenAPI document needs a key too (the docs page asks for it)")
    p.set_defaults(run=partial(run, _deploy))

    p = subcommands.add_parser("apis", help="list the deployed APIs")
    p.add_argument("--json", action="store_true", help="print the raw JSON")
    p.set_defaults(run=partial(run, _apis))

    p = subcommands.add_parser("info", help="an API's status, versions, limits and routes")
    p.add_argument("name", help="API name or id")
    p.add_argument("--json", action="store_true", help="print the raw JSON")
    p.set_defaults(run=partial(run, _info))

    p = subcommands.add_parser("rollback", help="switch an API back to one of its versions")
    p.add_argument("name", help="API name or id")
    p.add_argument("version", type=positive_int)
    p.set_defaults(run=partial(run, _rollback))

    p = subcommands.add_parser("delete", help="delete an API: its endpoint answers 404 and its keys stop working")
    p.add_argument("name", help="API name or id")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(run=partial(run, _delete))

    p = subcommands.add_parser("pause", help="pause an API: its calls are refused until it is resumed")
    p.add_argument("name", help="API name or id")
    p.set_defaults(run=partial(run, partial(_pause_or_resume, "pause")))

    p = subcommands.add_parser("resume", help="resume a paused API")
    p.add_argument("name", help="API name or id")
    p.set_defaults(run=partial(run, partial(_pause_or_resume, "resume")))

    p = subcommands.add_parser("usage", help="an API's calls per hour: requests, errors, fuel, bytes")
    p.add_argument("name", help="API name or id")
    p.add_argument("--json", action="store_true", help="print the raw JSON")
    p.set_defaults(run=partial(run, _usage))

    p = subcommands.add_parser("keys", help="list, create (--new) or revoke (--revoke ID) an API's keys")
    p.add_argument("name", help="API name or id")
    action = p.add_mutually_exclusive_group()
    action.add_argument("--new", action="store_true", help="create a key (shown once)")
    action.add_argument("--revoke", metavar="KEY_ID", help="revoke a key at once")
    p.set_defaults(run=partial(run, _keys))


def _find(client: httpx.Client, name: str) -> dict[str, Any] | None:
    response = client.get(f"/v1/apis/{name}")
    return None if response.status_code == 404 else check(response)


def _deploy(client: httpx.Client, args: argparse.Namespace) -> int:
    source: Path = args.source
    if not source.exists():
        raise CliError(f"{source} does not exist")
    name = args.name or (source.resolve().stem if source.is_dir() else source.stem)
    data: dict[str, str] = {"name": name}
    asked = (("memory_mb", args.memory_mb), ("fuel", args.fuel), ("timeout_ms", args.timeout_ms),
             ("async_timeout_ms", args.async_timeout_ms))
    limits = {name: value for name, value in asked if value is not None}
    if limits:
        data["limits"] = orjson.dumps(limits).decode()
    if args.rate_limit:
        requests, seconds = args.rate_limit
        data["rate_limit"] = orjson.dumps({"requests": requests, "per_seconds": seconds}).decode()
    if args.private:
        data["private"] = "true"
    files: dict[str, tuple[str, bytes, str]] = {"source": _source_file(source)}
    if args.requirements:
        files["requirements"] = ("requirements.txt", args.requirements.read_bytes(), "text/plain")

    existing = _find(client, name)
    if existing is None:
        method, url = "POST", "/v1/apis"
        say(f"deploying {source} as new API {name!r}")
    else:
        method, url = "PUT", f"/v1/apis/{existing['id']}"
        say(f"deploying {source} as a new version of {name!r} (now version {existing['version']})")
    with client.stream(method, url, data=data, files=files, headers={"Accept": "application/x-ndjson"}) as response:
        if response.headers.get("content-type", "").startswith("application/x-ndjson"):
            final = _follow_build(response)
        else:
            response.read()
            final = {"status": response.status_code, "body": json_or_text(response)}
    if not 200 <= final["status"] < 300:
        raise CliError(error_text(final["status"], final["body"]))
    result = final["body"]
    endpoint = f"{client.base_url}".rstrip("/") + result["endpoint"]
    print(f"endpoint: {endpoint}")
    print(f"docs:     {endpoint}/docs")
    print(f"version:  {result['version']}")
    if "api_key" in result:
        print(f"api key:  {result['api_key']}   (shown only now)")
        print(f'try:      curl -H "X-API-Key: {result["api_key"]}" {endpoint}/')
    return 0


def _source_file(source: Path) -> tuple[str, bytes, str]:
    if source.is_dir():
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(source.rglob("*")):
                if file.is_file() and "__pycache__" not in file.parts:
                    archive.write(file, file.relative_to(source).as_posix())
        return (source.resolve().name + ".zip", buffer.getvalue(), "application/zip")
    kind = "application/zip" if source.suffix == ".zip" else "text/x-python"
    return (source.name, source.read_bytes(), kind)


def _follow_build(response: httpx.Response) -> dict[str, Any]:
    final: dict[str, Any] = {"status": 500, "body": "the build stream ended early"}
    for line in response.iter_lines():
        if not line.strip():
            continue
        event = orjson.loads(line)
        if "log" in event:
            say(f"  {event['log']}")
        else:
            final = event
    return final


def _apis(client: httpx.Client, args: argparse.Namespace) -> int:
    apis = check(client.get("/v1/apis"))["apis"]
    if args.json:
        print_json(apis)
        return 0
    if not apis:
        print("no APIs deployed")
        return 0
    table([("ID", "NAME", "VERSION", "STATUS", "ENDPOINT")]
          + [(a["id"], a["name"], a["version"], a["status"], a["endpoint"]) for a in apis])
    return 0


def _info(client: httpx.Client, args: argparse.Namespace) -> int:
    api = check(client.get(f"/v1/apis/{args.name}"))
    if args.json:
        print_json(api)
        return 0
    _describe(api)
    return 0


def _describe(api: dict[str, Any]) -> None:
    print(f"{api['name']} ({api['id']}): version {api['version']}, {api['status']}")
    print(f"endpoint:   {api['endpoint']}")
    limits = api.get("limits") or {}
    print("limits:     " + ", ".join(f"{name}={value}" for name, value in limits.items()))
    if api.get("rate_limit"):
        print(f"rate limit: {api['rate_limit']}")
    if api.get("quota"):
        print(f"quota:      {api['quota']}")
    routes = api.get("routes") or []
    if routes:
        print("routes:")
        for route in routes:
            print(f"  {route['method']:7} {route['path']}")
    versions = api.get("versions") or []
    if versions:
        print("versions:")
        table([("", "VERSION", "STATUS", "CREATED", "SOURCE", "BUNDLE")] + [
            ("*" if v["active"] else "", v["version"], v.get("status", ""), v["created_at"], v["source"],
             (v.get("bundle_hash") or "-")[:12])
            for v in versions
        ])


def _rollback(client: httpx.Client, args: argparse.Namespace) -> int:
    api = check(client.post(f"/v1/apis/{args.name}/rollback", json={"version": args.version}))
    print(f"{api['name']} now serves version {api['version']}")
    return 0


def _delete(client: httpx.Client, args: argparse.Namespace) -> int:
    what = f"API {args.name}, its versions and its keys"
    return delete_confirmed(client, what, f"/v1/apis/{args.name}", args.yes, f"deleted {args.name}")


def _pause_or_resume(action: str, client: httpx.Client, args: argparse.Namespace) -> int:
    api = check(client.post(f"/v1/apis/{args.name}/{action}"))
    print(f"{api['name']}: {api['status']}")
    return 0


def _usage(client: httpx.Client, args: argparse.Namespace) -> int:
    usage = check(client.get(f"/v1/apis/{args.name}/usage"))
    if args.json:
        print_json(usage)
        return 0
    hours = usage.get("hours") or []
    if not hours:
        print("no calls yet")
        return 0
    table([("HOUR", "REQUESTS", "ERRORS", "FUEL", "BYTES IN", "BYTES OUT")] + [
        (h["hour"], h["requests"], sum((h.get("errors") or {}).values()), h["fuel"], h["bytes_in"], h["bytes_out"])
        for h in hours
    ])
    return 0


def _keys(client: httpx.Client, args: argparse.Namespace) -> int:
    if args.new:
        key = check(client.post(f"/v1/apis/{args.name}/keys"))
        print(f"key id:  {key['id']}")
        print(f"api key: {key['api_key']}   (shown only now)")
        return 0
    if args.revoke:
        check(client.delete(f"/v1/apis/{args.name}/keys/{args.revoke}"))
        print(f"revoked {args.revoke}")
        return 0
    keys = check(client.get(f"/v1/apis/{args.name}/keys"))["keys"]
    table([("ID", "PREFIX", "CREATED")] + [(k["id"], k["prefix"], k["created_at"]) for k in keys])
    return 0
