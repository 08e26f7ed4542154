"""`wasmgate dev [DIR]`: a local gateway serving every API in a folder, rebuilt as you edit.

One gateway process with the embedded defaults and its own data dir (DIR/.wasmgate unless
--data-dir); which files are APIs, how changes are followed and what a failed build does is
gateway.http.apis_dir's, shared with `wasmgate serve --apis-dir`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from gateway.settings import Settings

DATA_DIR = ".wasmgate"


def register(subcommands: argparse._SubParsersAction) -> None:
    p = subcommands.add_parser("dev", help="serve every API in a folder on a local gateway, rebuilt on every change")
    p.add_argument("dir", nargs="?", type=Path, default=Path("."), help="the folder (default: the current one)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--data-dir", type=Path, help=f"state directory (default DIR/{DATA_DIR})")
    p.set_defaults(run=_dev)


def _dev(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.http.app import create_app
    from gateway.http.protocol import GatewayH11Protocol
    from gateway.http.supervisor import port_taken

    folder: Path = args.dir.resolve()
    if not folder.is_dir():
        _say(f"error: {args.dir} is not a folder")
        return 2
    taken = port_taken(args.host, args.port)
    if taken:
        _say(f"error: {taken} (choose another with --port)")
        return 1
    data_dir = (args.data_dir or folder / DATA_DIR).resolve()
    settings = Settings(host=args.host, port=args.port, data_dir=data_dir, apis_dir=folder, processes=1, example=False)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _say(f"wasmgate dev: serving {folder} on http://{args.host}:{args.port} (state in {data_dir}; Ctrl-C stops)")
    uvicorn.run(create_app(settings), host=args.host, port=args.port, http=GatewayH11Protocol,
                log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    return 0


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
