"""`wasmgate serve`: run the gateway, in one process or as N worker processes on one port."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from gateway.http.example import EXAMPLE_NAME
from gateway.settings import Settings


def register(subcommands: argparse._SubParsersAction) -> None:
    p = subcommands.add_parser("serve", help="run the gateway (metadata, bundles and limits under --data-dir)")
    p.add_argument("--host", help="interface to listen on (default 127.0.0.1, WASMGATE_HOST)")
    p.add_argument("--port", type=int, help="port (default 8000, WASMGATE_PORT)")
    p.add_argument("--data-dir", type=Path, help="state directory (default ./.wasmgate, WASMGATE_DATA_DIR)")
    p.add_argument(
        "--example", action="store_true", help=f"deploy examples/hello.py as {EXAMPLE_NAME!r} and print curl commands"
    )
    p.add_argument("--workers", type=int, help="gateway processes on the port (default: one per core)")
    p.add_argument(
        "--apis-dir", type=Path, metavar="DIR", help="serve every API in DIR, following its changes (as `wasmgate dev`)"
    )
    p.set_defaults(run=_serve)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.http.app import create_app
    from gateway.http.protocol import GatewayH11Protocol
    from gateway.http.supervisor import port_taken, run_workers
    from gateway.metrics import prepare_multiprocess
    from gateway.services import prepare_data_dir
    from gateway.state.database import Database
    from gateway.state.worker_sync import reset

    processes = args.workers if args.workers is not None else (os.cpu_count() or 1)
    if processes < 1:
        _say("error: --workers must be at least 1")
        return 2
    if args.apis_dir is not None and not args.apis_dir.is_dir():
        _say(f"error: --apis-dir {args.apis_dir} is not a folder")
        return 2
    if args.apis_dir is not None and args.example:
        _say("error: --example and --apis-dir do not go together: put a copy of examples/hello.py in the folder")
        return 2
    apis_dir = args.apis_dir.resolve() if args.apis_dir is not None else None
    overrides = {"host": args.host, "port": args.port, "data_dir": args.data_dir, "apis_dir": apis_dir}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if processes == 1:
        settings = Settings(**overrides, example=args.example)
        uvicorn.run(create_app(settings), host=settings.host, port=settings.port, http=GatewayH11Protocol,
                    log_level="info", access_log=settings.access_log, timeout_graceful_shutdown=30)
        return 0
    # Several processes on one port (gateway.http.supervisor): each builds its app from the
    # environment, after this parent has prepared the data dir once.
    for name, value in {**overrides, "processes": processes, "example": args.example}.items():
        os.environ[f"WASMGATE_{name.upper()}"] = str(value)
    settings = Settings()
    taken = port_taken(settings.host, settings.port)
    if taken:  # before anything is prepared or printed
        _say(f"error: {taken}")
        return 1
    prepare_data_dir(settings)
    Database(settings.database_url or settings.db_path).close()  # migrate once, not in every worker
    reset(settings.workers_dir)
    prepare_multiprocess(settings.data_dir / "metrics")  # before the workers import prometheus_client
    return run_workers(settings.host, settings.port, processes)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
