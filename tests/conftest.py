"""Shared fixtures: one bundle store, runtime and bundle cache for the whole session.

Builds cost ~25 s each, so every test app is built once per session: `build_app(source)`
returns the cached bundle for the same source text (the builder itself also skips work for a
bundle hash already in the store). Set WASMGATE_TEST_DATA_DIR to keep the store across sessions.
"""

from __future__ import annotations

import hashlib
import os
import textwrap
from pathlib import Path
from typing import Callable

import pytest

from builder.build import build
from runtime import Bundle, BundleStore, Runtime

ROOT = Path(__file__).parent.parent
APPS = Path(__file__).parent / "apps"
EXAMPLE = ROOT / "examples" / "hello.py"


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A WASMGATE_DATA_DIR whose store is the session's bundle store (so the CLI reuses builds)."""
    root = os.environ.get("WASMGATE_TEST_DATA_DIR")
    return Path(root) if root else tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def bundle_store(data_dir: Path) -> BundleStore:
    return BundleStore(data_dir / "store")


@pytest.fixture(scope="session")
def runtime(bundle_store: BundleStore) -> Runtime:
    rt = Runtime(bundle_store)
    yield rt
    rt.close()


@pytest.fixture(scope="session")
def build_app(bundle_store: BundleStore, runtime: Runtime, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Bundle]:
    """Build a module from source text, or from a file (a Path, or a name in tests/apps/), once per session."""
    cache: dict[str, Bundle] = {}
    sources = tmp_path_factory.mktemp("sources")

    def _build(source: str | Path, requirements: list[str] | None = None, **kwargs) -> Bundle:
        if not isinstance(source, Path):
            source = APPS / source if source.endswith(".py") else _write(textwrap.dedent(source))
        key = repr((source, requirements, sorted(kwargs.items())))
        if key not in cache:
            cache[key] = build(source, bundle_store, requirements=requirements, runtime=runtime, **kwargs).bundle
        return cache[key]

    def _write(text: str) -> Path:
        path = sources / hashlib.sha256(text.encode()).hexdigest()[:16] / "app.py"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        return path

    return _build
