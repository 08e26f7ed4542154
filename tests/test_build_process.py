"""Builds run in a process of their own (builder.build_process): the caller gets the log as it
comes, the stored bundle (precompiled for its own engine) or a typed BuildError, and the
process is gone afterwards, with whatever it allocated."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import pytest

from builder.build_process import BuildOrder, build_in_process
from builder.errors import BuildError
from runtime import BundleStore, Runtime
from conftest import EXAMPLE
from process_support import processes


def build_processes() -> dict[int, str]:
    """This test process's children that run a build: pid -> command line."""
    return {
        pid: cmdline for pid, (parent, state, cmdline) in processes().items()
        if parent == os.getpid() and state != "Z" and "builder.build_process" in cmdline
    }


def order(store: BundleStore, source: Path = EXAMPLE, **kwargs) -> BuildOrder:
    return BuildOrder(source=str(source), store_dir=str(store.root), **kwargs)


def test_a_build_runs_in_its_own_process_and_streams_its_log(bundle_store: BundleStore, runtime: Runtime):
    lines: list[str] = []
    seen_processes: list[dict[int, str]] = []

    def log(line: str) -> None:
        if not lines:
            seen_processes.append(build_processes())
        lines.append(line)

    built = build_in_process(order(bundle_store), log)

    assert lines[0] == f"reading source {EXAMPLE.name}" and built.bundle_hash[:12] in lines[-1]
    [builders] = seen_processes
    assert len(builders) == 1 and os.getpid() not in builders  # one child ran it, not this process
    assert build_processes() == {}  # and it is gone
    bundle = bundle_store.get(built.bundle_hash)
    assert bundle_store.compiled_path(bundle, runtime.engine.fingerprint).is_file()  # compiled for our engine
    assert runtime.describe(bundle)["routes"] == bundle.routes


def test_what_the_author_got_wrong_comes_back_as_a_build_error(bundle_store: BundleStore, tmp_path: Path):
    source = tmp_path / "app.py"
    source.write_text("x = 1\n" * 100)
    with pytest.raises(BuildError) as raised:
        build_in_process(order(bundle_store, source, max_source_bytes=64))
    assert raised.value.message == "source is 600 bytes; the limit is 64"
    assert raised.value.details == {"limit_bytes": 64}


def test_a_killed_build_process_is_a_build_error_and_the_next_build_works(bundle_store: BundleStore, tmp_path: Path):
    def kill_it(line: str) -> None:
        for pid in build_processes():
            os.kill(pid, signal.SIGKILL)

    # A source no build has seen: the process is still building when its first line arrives
    # (the example itself may be in the store already, and its build then ends before the kill).
    source = tmp_path / EXAMPLE.name
    source.write_text(EXAMPLE.read_text() + f"\n# {uuid.uuid4()}\n")
    with pytest.raises(BuildError) as raised:
        build_in_process(order(bundle_store, source), kill_it)
    assert raised.value.message == (
        "the build stopped unexpectedly (its process was killed by SIGKILL); nothing was deployed"
    )
    assert build_in_process(order(bundle_store)).bundle_hash
