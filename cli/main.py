"""The `wasmgate` command: subcommands are registered by the modules that implement them."""

from __future__ import annotations

import argparse
import importlib.metadata
import sys

from pydantic import ValidationError

from cli import accounts, admin_token, dev, jobs, local, logs, remote, serve, starter, worker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wasmgate", description="Serve Python code as sandboxed HTTP APIs.")
    parser.add_argument("--version", action="version", version=f"wasmgate {importlib.metadata.version('wasmgate')}")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    local.register(subcommands)
    serve.register(subcommands)
    dev.register(subcommands)
    starter.register(subcommands)
    worker.register(subcommands)
    remote.register(subcommands)
    logs.register(subcommands)
    jobs.register(subcommands)
    accounts.register(subcommands)
    admin_token.register(subcommands)
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except ValidationError as error:
        if error.title != "Settings":
            raise
        for problem in error.errors():  # a WASMGATE_* variable the settings refuse
            name = "WASMGATE_" + "_".join(str(part) for part in problem["loc"]).upper()
            print(f"wasmgate: {name}={problem.get('input')!s}: {problem['msg']}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
