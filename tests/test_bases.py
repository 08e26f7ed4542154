"""Bases: componentize-py runs once per set of dependencies, and every build loads its app
into that base's snapshot (builder.bases, builder.resnapshot). A code-only change reuses the
base; a damaged base is built again; a component the snapshotter cannot handle falls back
to componentize-py on the app itself."""

from __future__ import annotations

import json
import shutil

import pytest

from builder import bases, build as build_module, resnapshot
from builder.build import build
from builder.snapshot_state import SnapshotUnsupported
from runtime import BundleStore, Limits, SandboxRequest

APP = "from wasmgate import App\napp = App()\n\n@app.get('/v')\ndef v():\n    return {{'version': {version}}}\n"


def _deploy(tmp_path, bundle_store, runtime, version: int):
    source = tmp_path / f"v{version}" / "app.py"
    source.parent.mkdir()
    source.write_text(APP.format(version=version))
    lines: list[str] = []
    bundle = build(source, bundle_store, runtime=runtime, log=lines.append).bundle
    answer = runtime.invoke(bundle, SandboxRequest("GET", "/v"), Limits()).response
    return bundle, lines, json.loads(answer.body)


def test_a_code_only_change_is_loaded_into_the_base_the_first_build_used(bundle_store, runtime, tmp_path):
    first, _lines, answer = _deploy(tmp_path, bundle_store, runtime, 1)
    assert answer == {"version": 1}
    second, lines, answer = _deploy(tmp_path, bundle_store, runtime, 2)
    assert answer == {"version": 2}
    assert first.manifest["base"] == second.manifest["base"] is not None
    assert any(line.startswith("loading your module into the base") for line in lines)
    assert not any("componentize-py" in line for line in lines)  # no componentize-py run for it


def test_a_component_the_snapshotter_cannot_handle_is_built_by_componentize_py(
    bundle_store, runtime, tmp_path, monkeypatch
):
    def unsupported(*args, **kwargs):
        raise SnapshotUnsupported("a second memory")

    monkeypatch.setattr(build_module.bases, "ensure", unsupported)
    bundle, lines, answer = _deploy(tmp_path, bundle_store, runtime, 3)
    assert answer == {"version": 3}
    assert bundle.manifest["base"] is None
    assert any("cannot be snapshotted again here (a second memory)" in line for line in lines)


def test_a_damaged_base_is_built_again(bundle_store, runtime, tmp_path):
    bundle, _lines, _answer = _deploy(tmp_path, bundle_store, runtime, 4)
    key = bundle.manifest["base"]
    store = BundleStore(tmp_path / "store")
    shutil.copytree(bundle_store.root / "bases" / key, store.root / "bases" / key)
    engine = resnapshot.engine()
    assert bases.ensure(store, key, engine, stage=_never, log=print).key == key  # intact: used as it is
    plan = store.root / "bases" / key / bases.PLAN
    plan.write_text(plan.read_text().replace('"instance": ', '"instance": 1'))
    lines: list[str] = []
    with pytest.raises(_Rebuilt):
        bases.ensure(store, key, engine, stage=_never, log=lines.append)
    assert "the base for these dependencies is damaged: building it again" in lines
    assert not (store.root / "bases" / key).exists()


class _Rebuilt(Exception):
    pass


def _never(folder):
    raise _Rebuilt(folder)
