"""Runs one build in a process of its own, so that what a build allocates is given back.

A build compiles a component (tens of MB of Cranelift work), parses and splits it, and
imports the builder's modules; run in a long-lived server, each left ~1 MB behind that only
a restart returned (measured over 300 builds). `build_in_process` starts a fresh Python
(`python -m builder.build_process`), which runs `builder.build.build` against the same store
and sends its log lines and outcome back as JSON lines on a pipe of its own; the caller gets
the stored bundle's hash. The process then exits, and all its memory with it.

The process dies with the thread that started it (PR_SET_PDEATHSIG), so a `kill -9` of the
caller does not leave a build running on; a build process that dies (killed, out of memory)
is a BuildError saying so, and what it left in the store is removed at the next start
(`BundleStore.remove_leftovers`: its temporary directory is named after its pid).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from builder.child_process import die_with_parent
from builder.errors import BuildError
from builder.source import MAX_SOURCE_BYTES

Log = Callable[[str], None]


@dataclass(frozen=True)
class BuildOrder:
    """What `builder.build.build` is given, plus what the build process needs to open the same
    store and an engine whose compiled code the caller's runtime can load."""

    source: str
    store_dir: str
    requirements: list[str] = field(default_factory=list)
    wheelhouse: str | None = None
    index_url: str | None = None
    max_source_bytes: int = MAX_SOURCE_BYTES
    max_memory_bytes: int = 512 << 20


@dataclass(frozen=True)
class BuiltBundle:
    bundle_hash: str
    cached: bool
    seconds: float


def build_in_process(order: BuildOrder, log: Log = lambda line: None) -> BuiltBundle:
    """Run the build `order` describes in a new process; its log lines go to `log` as they come.
    Raises BuildError for anything the author can act on, or when the process dies; an
    unexpected failure inside the build is a RuntimeError carrying the process's traceback."""
    read_end, write_end = os.pipe()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", __name__, str(write_end), str(os.getpid())],
            stdin=subprocess.PIPE,
            pass_fds=(write_end,),
        )
    finally:
        os.close(write_end)  # the child holds the only writing end: its exit is our end of file
    try:
        with process.stdin:  # type: ignore[union-attr]
            process.stdin.write(json.dumps(asdict(order)).encode())  # type: ignore[union-attr]
        with open(read_end, "rb") as results:
            for line in results:
                kind, payload = json.loads(line)
                if kind == "log":
                    log(payload)
                elif kind == "done":
                    return BuiltBundle(**payload)
                elif kind == "error":
                    raise BuildError(payload["message"], payload["details"])
                else:
                    raise RuntimeError(f"the build process failed unexpectedly:\n{payload}")
    finally:
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    raise BuildError(f"the build stopped unexpectedly ({_how_it_ended(process.returncode)}); nothing was deployed")


def _how_it_ended(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"its process was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"its process was killed by signal {-returncode}"
    return f"its process exited with status {returncode}"


def _main(results_fd: int, parent: int) -> None:
    """The build process: read the order, run the build, send log lines and the outcome."""
    die_with_parent(parent)
    order = BuildOrder(**json.loads(sys.stdin.buffer.read()))
    with open(results_fd, "w", buffering=1) as results:

        def send(kind: str, payload: object) -> None:
            results.write(json.dumps([kind, payload]) + "\n")

        try:
            send("done", asdict(_build(order, lambda line: send("log", line))))
        except BuildError as error:
            send("error", {"message": error.message, "details": error.details})
        except Exception:  # noqa: BLE001 - sent to the caller, which logs it and answers 500
            send("crash", traceback.format_exc())


def _build(order: BuildOrder, log: Log) -> BuiltBundle:
    from builder.build import build
    from runtime import BundleStore, PoolBudget, Runtime

    store = BundleStore(Path(order.store_dir))
    runtime = Runtime(store, pool=PoolBudget(ready=0, fillers=0), concurrency=1, max_memory_bytes=order.max_memory_bytes)
    try:
        result = build(
            Path(order.source),
            store,
            requirements=order.requirements,
            wheelhouse=Path(order.wheelhouse) if order.wheelhouse else None,
            index_url=order.index_url,
            runtime=runtime,
            max_source_bytes=order.max_source_bytes,
            log=log,
        )
    finally:
        runtime.close()
    return BuiltBundle(result.bundle.hash, result.cached, result.seconds)


if __name__ == "__main__":
    _main(int(sys.argv[1]), int(sys.argv[2]))
