"""`wasmgate build` and `wasmgate invoke-local`: build a bundle and run one request, no server."""

from __future__ import annotations

import argparse
import json
import mimetypes
import shutil
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode

from builder.build import build
from builder.errors import BuildError
from cli.arguments import existing_file, positive_int
from gateway.settings import get_settings
from runtime import BundleNotFound, BundleStore, Limits, Runtime, SandboxError, SandboxRequest, Upload


def register(subcommands: argparse._SubParsersAction) -> None:
    p = subcommands.add_parser("build", help="build a bundle from a module, package directory or zip")
    p.add_argument("source", type=Path)
    p.add_argument("-r", "--requirements", type=existing_file, help="requirements.txt with pure-Python packages")
    p.add_argument("-o", "--output", type=Path, help="also copy the bundle directory here")
    p.add_argument("--entry", help="module that defines `app` (default: app, main, or the only module)")
    p.add_argument("--wheelhouse", type=Path, help="resolve requirements offline from this wheel directory")
    p.set_defaults(run=_build)

    p = subcommands.add_parser("invoke-local", help="run one request through a bundle, without a server")
    p.add_argument("bundle", help="bundle directory, or bundle hash (or the short hash `build` prints) in the local store")
    p.add_argument("--method", default="GET")
    p.add_argument("--path", default="/")
    p.add_argument("--query", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--header", action="append", default=[], metavar="NAME:VALUE")
    body = p.add_mutually_exclusive_group()
    body.add_argument("--json", help="JSON request body")
    body.add_argument("--data", help="raw request body, or @FILE")
    p.add_argument("--form", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--file", action="append", default=[], metavar="FIELD=PATH")
    p.add_argument("--memory-mb", type=positive_int)
    p.add_argument("--fuel", type=positive_int)
    p.add_argument("--timeout-ms", type=positive_int)
    p.set_defaults(run=_invoke_local)


def _store() -> BundleStore:
    return BundleStore(get_settings().store_dir)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _build(args: argparse.Namespace) -> int:
    settings = get_settings()
    requirements = args.requirements.read_text().splitlines() if args.requirements else None
    store = _store()
    try:
        result = build(
            args.source,
            store,
            requirements=requirements,
            entry=args.entry,
            wheelhouse=args.wheelhouse or settings.wheelhouse,
            index_url=settings.index_url,
            log=_say,
        )
    except BuildError as error:
        _say(f"error: {error.message}")
        for key, value in error.details.items():
            _say(f"  {key}: {value}" if not isinstance(value, str) or "\n" not in value else f"  {key}:\n{value}")
        return 1
    bundle = result.bundle
    location = bundle.path
    if args.output:
        if args.output.exists():
            shutil.rmtree(args.output)
        shutil.copytree(bundle.path, args.output)
        location = args.output
    print(json.dumps({"bundle": bundle.hash, "path": str(location), "routes": len(bundle.routes)}))
    return 0


def _pairs(items: list[str], sep: str, flag: str) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        name, found, value = item.partition(sep)
        if not found:
            raise SystemExit(f"error: {flag} takes NAME{sep}VALUE, got {item!r}")
        pairs.append((name.strip(), value.strip() if sep == ":" else value))
    return pairs


def _invoke_local(args: argparse.Namespace) -> int:
    store = _store()
    try:
        candidate = Path(args.bundle)
        bundle = store.open(candidate) if candidate.is_dir() else store.get(store.full_hash(args.bundle))
    except BundleNotFound:
        _say(f"error: no bundle {args.bundle!r} (give a bundle directory or a hash from `wasmgate build`)")
        return 2
    try:
        limits = _limits(args, bundle.manifest.get("default_limits", {}))
    except ValueError as error:
        _say(f"error: {error}")
        return 2
    path, _, query = args.path.partition("?")  # as in a URL: the gateway hands the app its path decoded
    headers = _pairs(args.header, ":", "--header")
    body: bytes = b""
    if args.json is not None:
        try:
            json.loads(args.json)
        except ValueError as error:
            raise SystemExit(f"error: --json is not valid JSON: {error}")
        body = args.json.encode()
        headers.append(("content-type", "application/json"))
    elif args.data is not None:
        body = _read_data(args.data)
    with tempfile.TemporaryDirectory(prefix="wasmgate-upload-") as upload_dir:
        files = [_stage_upload(field, Path(p), Path(upload_dir), i) for i, (field, p) in enumerate(_pairs(args.file, "=", "--file"))]
        form = _pairs(args.form, "=", "--form")
        if files or form:
            headers.append(("content-type", "multipart/form-data" if files else "application/x-www-form-urlencoded"))
        if form and not files and not body:  # as the gateway hands it over: the fields, and their raw body
            body = urlencode(form).encode()
        request = SandboxRequest(
            method=args.method,
            path=unquote(path),
            query=parse_qsl(query, keep_blank_values=True) + _pairs(args.query, "=", "--query"),
            headers=headers,
            form=form,
            files=files,
            body=body,
            upload_dir=Path(upload_dir),
        )
        runtime = Runtime(store)
        started = time.perf_counter()
        try:
            invocation = runtime.invoke(bundle, request, limits)
        except SandboxError as error:
            _say(f"{error.code}: {error.message}")
            _report(error.report, time.perf_counter() - started)
            if error.detail:
                _say(error.detail[-4000:])
            return 1
    response = invocation.response
    _say(f"HTTP {response.status}")
    for name, value in response.headers:
        _say(f"{name}: {value}")
    _report(invocation.report, time.perf_counter() - started)
    sys.stdout.buffer.write(response.body)
    if sys.stdout.isatty() and not response.body.endswith(b"\n"):
        sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()
    return 0


def _read_data(data: str) -> bytes:
    """--data's body: the text itself, or the bytes of the file after `@`."""
    if not data.startswith("@"):
        return data.encode()
    try:
        return Path(data[1:]).read_bytes()
    except OSError as error:
        raise SystemExit(f"error: --data {data}: {error.strerror or error}") from None


def _limits(args: argparse.Namespace, defaults: dict) -> Limits:
    return Limits.from_mb(
        memory_mb=args.memory_mb or defaults.get("memory_mb"),
        fuel=args.fuel or defaults.get("fuel"),
        timeout_ms=args.timeout_ms or defaults.get("timeout_ms"),
        max_response_bytes=defaults.get("max_response_bytes"),
        max_log_bytes=defaults.get("max_log_bytes"),
    )


def _stage_upload(field: str, source: Path, upload_dir: Path, index: int) -> Upload:
    if not source.is_file():
        raise SystemExit(f"error: --file {field}={source}: no such file")
    target = upload_dir / str(index)
    try:
        target.hardlink_to(source)
    except OSError:
        shutil.copyfile(source, target)
    content_type = mimetypes.guess_type(source.name)[0] or "application/octet-stream"
    return Upload(field, source.name, content_type, target, source.stat().st_size)


def _report(report, seconds: float) -> None:  # noqa: ANN001
    _say(
        f"[fuel {report.fuel_used:,} | instantiate {report.instantiate_ms:.2f} ms | "
        f"call {report.call_ms:.2f} ms | total {seconds * 1000:.1f} ms]"
    )
    for name in ("stdout", "stderr"):
        text = getattr(report, name)
        if text:
            _say(f"--- guest {name} ---\n{text.rstrip()}")
