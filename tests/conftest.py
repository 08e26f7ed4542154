"""Shared fixtures: one bundle store, runtime and bundle cache for the whole session.

Builds cost ~6 s each, so every test app is built once per session: `build_app(source)`
returns the cached bundle for the same source text (the builder itself also skips work for a
bundle hash already in the store). The suite runs in two pytest-xdist workers (README's test
command); they share one bundle store, and a build one worker has started, the other waits
for rather than repeats. Set WASMGATE_TEST_DATA_DIR to keep the store across sessions.
"""

from __future__ import annotations

import hashlib
import os
import textwrap
from pathlib import Path
from typing import Callable

import pytest
from filelock import FileLock

from builder.build import build
from runtime import Bundle, BundleStore, Runtime

ROOT = Path(__file__).parent.parent
APPS = Path(__file__).parent / "apps"
EXAMPLE = ROOT / "examples" / "hello.py"


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory every xdist worker of this run sees (the run's own one without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory, shared_dir: Path) -> Path:
    """A WASMGATE_DATA_DIR whose store is the run's bundle store (so the CLI reuses builds);
    the rest of it is this worker's own."""
    root = os.environ.get("WASMGATE_TEST_DATA_DIR")
    path = tmp_path_factory.mktemp("data")
    store = Path(root) / "store" if root else shared_dir / "store"
    store.mkdir(parents=True, exist_ok=True)
    (path / "store").symlink_to(store.resolve(), target_is_directory=True)
    return path


@pytest.fixture(scope="session")
def bundle_store(data_dir: Path) -> BundleStore:
    return BundleStore((data_dir / "store").resolve())


@pytest.fixture(scope="session")
def runtime(bundle_store: BundleStore) -> Runtime:
    rt = Runtime(bundle_store)
    yield rt
    rt.close()


@pytest.fixture(scope="session")
def build_app(bundle_store: BundleStore, runtime: Runtime, tmp_path_factory: pytest.TempPathFactory,
              shared_dir: Path) -> Callable[..., Bundle]:
    """Build a module from source text, or from a file (a Path, or a name in tests/apps/), once per session."""
    cache: dict[str, Bundle] = {}
    sources = tmp_path_factory.mktemp("sources")
    locks = shared_dir / "build-locks"
    locks.mkdir(exist_ok=True)

    def _build(source: str | Path, requirements: list[str] | None = None, **kwargs) -> Bundle:
        if not isinstance(source, Path):
            source = APPS / source if source.endswith(".py") else _write(textwrap.dedent(source))
        key = repr((source, requirements, sorted(kwargs.items())))
        if key not in cache:
            lock = locks / hashlib.sha256(_identity(source, key).encode()).hexdigest()[:16]
            with FileLock(f"{lock}.lock"):  # the other worker's build of it, if any, finishes first
                cache[key] = build(source, bundle_store, requirements=requirements, runtime=runtime, **kwargs).bundle
        return cache[key]

    def _write(text: str) -> Path:
        path = sources / hashlib.sha256(text.encode()).hexdigest()[:16] / "app.py"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        return path

    def _identity(source: Path, key: str) -> str:
        """What makes two workers' builds the same: the source's content, not its path."""
        files = sorted(source.rglob("*")) if source.is_dir() else [source]
        return key.replace(str(source), "") + "".join(
            f"{path.relative_to(source.parent)}:{hashlib.sha256(path.read_bytes()).hexdigest()}"
            for path in files if path.is_file())

    return _build


# The files that take longest (a minute or more each: bundle builds, gateways, a soak) run first,
# so that the two xdist workers end together instead of one finishing a long file alone.
LONGEST_FIRST = ("test_soak.py", "test_differential.py", "test_hostile_guests.py", "test_faults.py", "test_cli.py",
                 "test_readiness.py", "test_jobs.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
