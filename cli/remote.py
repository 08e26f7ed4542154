"""The commands that talk to a running gateway over HTTP: `deploy`, `apis`, `logs`, `keys`.

They read the server URL and admin token from WASMGATE_URL and WASMGATE_ADMIN_TOKEN.
"""

from __future__ import annotations

import argparse
import io
import sys
import zipfile
from pathlib import Path
from typing import Any

import httpx
import orjson

from cli.arguments import existing_file, positive_int, rate_limit
from gateway.settings import get_settings

BUILD_TIMEOUT_S = 900


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
    p.add_argument("--private", action="store_true", help="require an API key for the docs too")
    p.set_defaults(run=_deploy)

    p = subcommands.add_parser("apis", help="list the deployed APIs")
    p.add_argument("--json", action="store_true", help="print the raw JSON")
    p.set_defaults(run=_apis)

    p = subcommands.add_parser("logs", help="show an API's latest invocations")
    p.add_argument("name", help="API name or id")
    p.add_argument("-n", "--limit", type=int, default=20)
    p.add_argument("--json", action="store_true", help="print the raw JSON")
    p.set_defaults(run=_logs)

    p = subcommands.add_parser("keys", help="list, create (--new) or revoke (--revoke ID) an API's keys")
    p.add_argument("name", help="API name or id")
    action = p.add_mutually_exclusive_group()
    action.add_argument("--new", action="store_true", help="create a key (shown once)")
    action.add_argument("--revoke", metavar="KEY_ID", help="revoke a key at once")
    p.set_defaults(run=_keys)


class CliError(Exception):
    pass


def _client() -> httpx.Client:
    settings = get_settings()
    if settings.admin_token is None:
        raise CliError("set WASMGATE_ADMIN_TOKEN to the gateway's admin token")
    return httpx.Client(
        base_url=settings.url,
        headers={"Authorization": f"Bearer {settings.admin_token.get_secret_value()}"},
        timeout=httpx.Timeout(30, read=BUILD_TIMEOUT_S),
    )


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _check(response: httpx.Response) -> Any:
    if response.is_success:
        return response.json() if response.content else None
    raise CliError(_error_text(response.status_code, _json_or_text(response)))


def _json_or_text(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def _error_text(status: int, body: Any) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return f"HTTP {status}: {body}"
    text = f"{error.get('code')} ({status}): {error.get('message')}"
    details = error.get("details") or {}
    for name in ("file", "line", "guest_traceback", "errors"):
        if name in details:
            text += f"\n  {name}: {details[name]}"
    if details.get("log") and "guest_traceback" not in details:
        text += "\n" + str(details["log"])[-4000:]
    return text


def _run(command, args: argparse.Namespace) -> int:
    try:
        with _client() as client:
            return command(client, args)
    except CliError as error:
        _say(f"error: {error}")
        return 1
    except httpx.TransportError as error:
        _say(f"error: cannot reach the gateway at {get_settings().url} ({error}); set WASMGATE_URL")
        return 1


def _find(client: httpx.Client, name: str) -> dict[str, Any] | None:
    response = client.get(f"/v1/apis/{name}")
    return None if response.status_code == 404 else _check(response)


def _deploy(args: argparse.Namespace) -> int:
    return _run(_do_deploy, args)


def _do_deploy(client: httpx.Client, args: argparse.Namespace) -> int:
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
        _say(f"deploying {source} as new API {name!r}")
    else:
        method, url = "PUT", f"/v1/apis/{existing['id']}"
        _say(f"deploying {source} as a new version of {name!r} (now version {existing['version']})")
    with client.stream(method, url, data=data, files=files, headers={"Accept": "application/x-ndjson"}) as response:
        if response.headers.get("content-type", "").startswith("application/x-ndjson"):
            final = _follow_build(response)
        else:
            response.read()
            final = {"status": response.status_code, "body": _json_or_text(response)}
    if not 200 <= final["status"] < 300:
        raise CliError(_error_text(final["status"], final["body"]))
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
            _say(f"  {event['log']}")
        else:
            final = event
    return final


def _apis(args: argparse.Namespace) -> int:
    return _run(_do_apis, args)


def _do_apis(client: httpx.Client, args: argparse.Namespace) -> int:
    apis = _check(client.get("/v1/apis"))["apis"]
    if args.json:
        print(orjson.dumps(apis, option=orjson.OPT_INDENT_2).decode())
        return 0
    if not apis:
        print("no APIs deployed")
        return 0
    rows = [("ID", "NAME", "VERSION", "STATUS", "ENDPOINT")]
    rows += [(a["id"], a["name"], str(a["version"]), a["status"], a["endpoint"]) for a in apis]
    _table(rows)
    return 0


def _logs(args: argparse.Namespace) -> int:
    return _run(_do_logs, args)


def _do_logs(client: httpx.Client, args: argparse.Namespace) -> int:
    logs = _check(client.get(f"/v1/apis/{args.name}/logs", params={"limit": args.limit}))["logs"]
    if args.json:
        print(orjson.dumps(logs, option=orjson.OPT_INDENT_2).decode())
        return 0
    for entry in reversed(logs):
        print(
            f"{entry['time']}  {entry['request_id'][:12]}  v{entry['version']}  {entry['method']} {entry['path']}"
            f"  {entry['status']} {entry['outcome']}  fuel={entry['fuel_used']}  {entry['duration_ms']:.1f} ms"
        )
        for stream in ("stdout", "stderr", "error"):  # error: why a call failed, the guest's traceback included
            for line in (entry.get(stream) or "").splitlines():
                print(f"    {stream}: {line}")
    return 0


def _keys(args: argparse.Namespace) -> int:
    return _run(_do_keys, args)


def _do_keys(client: httpx.Client, args: argparse.Namespace) -> int:
    if args.new:
        key = _check(client.post(f"/v1/apis/{args.name}/keys"))
        print(f"key id:  {key['id']}")
        print(f"api key: {key['api_key']}   (shown only now)")
        return 0
    if args.revoke:
        _check(client.delete(f"/v1/apis/{args.name}/keys/{args.revoke}"))
        print(f"revoked {args.revoke}")
        return 0
    keys = _check(client.get(f"/v1/apis/{args.name}/keys"))["keys"]
    _table([("ID", "PREFIX", "CREATED")] + [(k["id"], k["prefix"], k["created_at"]) for k in keys])
    return 0


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
