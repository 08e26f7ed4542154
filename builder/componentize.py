"""Runs componentize-py in a subprocess and turns its failures into BuildErrors.

A subprocess keeps a crashing or hanging pre-initialization away from the caller, lets the
caller show progress, and lets us pin the guest's python path: VIRTUAL_ENV points at an
empty directory, or componentize-py would add the host's site-packages to the guest path.
On Linux the subprocess dies with the thread that started it (PR_SET_PDEATHSIG), so a
`kill -9` of the gateway does not leave a build running on.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from builder.errors import BuildError, without_host_details
from sandbox_images.python import ENTRY_MODULE, WIT_DIR, WORLD

TIMEOUT_SECONDS = 300
GUEST_PYTHON = "3.14"  # the CPython componentize-py embeds
HEARTBEAT_SECONDS = 5.0
_SCRIPT = (
    "import sys\n"
    "from builder.child_process import die_with_parent; die_with_parent({parent})\n"
    "from componentize_py import script; sys.argv[0] = 'componentize-py'; sys.exit(script())"
)
NO_SPACE = "no space left on the gateway's disk for this build; nothing was installed"
# How componentize-py (Rust) words the errors of a full disk or an exhausted quota.
_NO_SPACE_MARKERS = ("No space left on device", "os error 28", "Disk quota exceeded", "os error 122")
# What the guest's entry module prefixes its message to the author with, when it stops a build.
_MARKER = "WASMGATE_BUILD_ERROR:"
_GUEST_TRACEBACK = re.compile(r'Traceback \(most recent call last\):\n  File "/\d+/')
_FRAME = re.compile(r'File "/(\d+)/([^"]+)", line (\d+)')


def componentize(python_path: list[Path], output: Path, log: Callable[[str], None], what: str = "your module") -> None:
    """Pre-initialize CPython with the python path's entry module; `what` it holds names it
    in the progress lines."""
    with tempfile.TemporaryDirectory(prefix="empty-venv-", dir=output.parent) as empty_venv:
        (Path(empty_venv) / "lib" / f"python{GUEST_PYTHON}" / "site-packages").mkdir(parents=True)
        _run(python_path, output, Path(empty_venv), log, what)


def _run(python_path: list[Path], output: Path, empty_venv: Path, log: Callable[[str], None], what: str) -> None:
    script = _SCRIPT.format(parent=os.getpid())
    command = [sys.executable, "-c", script, "-q", "-d", str(WIT_DIR), "-w", WORLD, "componentize"]
    for entry in python_path:
        command += ["-p", str(entry)]
    command += [ENTRY_MODULE, "-o", str(output)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_"))}
    env["VIRTUAL_ENV"] = str(empty_venv)
    process = subprocess.Popen(
        command, cwd=output.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or ()), daemon=True)
    reader.start()
    started = time.monotonic()
    while process.poll() is None:
        elapsed = time.monotonic() - started
        if elapsed > TIMEOUT_SECONDS:
            process.kill()
            raise BuildError(f"pre-initializing the module took longer than {TIMEOUT_SECONDS} s")
        try:
            process.wait(HEARTBEAT_SECONDS)
        except subprocess.TimeoutExpired:
            log(f"  ... pre-initializing CPython with {what} ({time.monotonic() - started:.0f} s)")
    reader.join()
    if process.returncode != 0 or not output.is_file():
        raise explain("".join(lines))


def explain(output: str) -> BuildError:
    """Turn componentize-py's failure output into what the author needs to see."""
    guest = _guest_traceback(output)
    if not guest and any(marker in output for marker in _NO_SPACE_MARKERS):  # the host's disk, not the app
        return BuildError(NO_SPACE, {"reason": "no-space"})
    if _MARKER in output:  # the entry module stopped the build: its last words are the message
        before, _marker, after = output.rpartition(_MARKER)
        glue = before.rfind("Traceback (most recent call last):")  # how the entry module raised it: not the app's
        guest = _guest_traceback(before[:glue] if glue >= 0 else before)
        return BuildError(after.splitlines()[0].strip(), {"guest_traceback": guest} if guest else {})
    details: dict = {"guest_traceback": guest} if guest else {"log": without_host_details(output)[-4000:]}
    frames = _FRAME.findall(guest or output)
    last_line = (guest or "").strip().splitlines()[-1] if guest else ""
    if frames:
        _index, file, line = frames[-1]
        details.update(file=file, line=int(line))
    if last_line.startswith(("SyntaxError", "IndentationError", "TabError")):
        location = f" in {details['file']} line {details['line']}" if "file" in details else ""
        return BuildError(f"syntax error{location}: {last_line}", details)
    if last_line:
        return BuildError(f"importing your module failed: {last_line}", details)
    return BuildError("componentize-py failed", details)


def _guest_traceback(output: str) -> str:
    """The guest's own traceback, without the host-side wrapper and Rust backtrace."""
    match = _GUEST_TRACEBACK.search(output)
    if match is None:
        return ""
    text = output[match.start():]
    for stop in ("\n\nCaused by:", "\nStack backtrace:", f"\n{_MARKER}"):
        text = text.split(stop, 1)[0]
    return text.strip()
