"""The builder: source and pure dependencies in, a working bundle out; bad input, clear errors."""

from __future__ import annotations

import hashlib
import json
import sys
import zipfile
from pathlib import Path

import pytest

from builder import component_layers
from builder.build import build
from conftest import EXAMPLE
from builder.errors import BuildError, without_host_details
from runtime import Limits, SandboxRequest
from wheel_factory import make_wheel

PACKAGE_APP = {
    "shop/__init__.py": "",
    "shop/api.py": (
        "from wasmgate import App\n"
        "import tinydep\n"
        "from shop.prices import total\n"
        "app = App()\n\n"
        "@app.get('/total')\n"
        "def get_total(items: list[int]):\n"
        "    return {'total': total(items), 'dep': tinydep.VERSION}\n\n"
        "@app.get('/lazy-dep')\n"
        "def lazy_dep():\n"
        "    from tinydep import later  # not imported at build time\n"
        "    return {'later': later.VALUE}\n"
    ),
    "shop/prices.py": "def total(items):\n    return sum(items)\n",
}


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Path:
    house = tmp_path_factory.mktemp("wheelhouse")
    make_wheel(
        house,
        "tinydep",
        "1.2.0",
        requires_dist=["helperdep>=1", 'hostonly; python_version < "3.12"'],
        files={"tinydep/__init__.py": "VERSION = '1.2.0'\n", "tinydep/later.py": "VALUE = 42\n"},
    )
    make_wheel(house, "helperdep", "1.0")
    make_wheel(house, "hostonly", "1.0")
    make_wheel(house, "fastnative", "2.0", tag="cp314-cp314-manylinux_2_17_x86_64")
    return house


@pytest.fixture(scope="module")
def package_zip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("zip") / "shop.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in PACKAGE_APP.items():
            archive.writestr(f"shop-src/{name}", text)
    return path


@pytest.fixture(scope="module")
def package_bundle(bundle_store, runtime, package_zip, wheelhouse):
    return build(package_zip, bundle_store, requirements=["tinydep==1.2.0"], entry="shop.api",
                 wheelhouse=wheelhouse, runtime=runtime).bundle


def call(runtime, bundle, path: str, **query) -> dict:
    request = SandboxRequest("GET", path, query=[(k, str(v)) for k, v in query.items()])
    return json.loads(runtime.invoke(bundle, request, Limits()).response.body)


def test_zip_package_with_pure_dependency_runs(runtime, package_bundle):
    assert call(runtime, package_bundle, "/total", items=3) == {"total": 3, "dep": "1.2.0"}


def test_dependency_module_imported_lazily_at_run_time(runtime, package_bundle):
    assert call(runtime, package_bundle, "/lazy-dep") == {"later": 42}


def test_manifest_records_lock_toolchain_routes_and_limits(package_bundle):
    manifest = package_bundle.manifest
    lock = {entry["name"]: entry["version"] for entry in manifest["lock"]}
    assert lock == {"tinydep": "1.2.0", "helperdep": "1.0"}  # hostonly's marker is false for 3.14
    assert all(len(entry["sha256"]) == 64 for entry in manifest["lock"])
    assert manifest["guest_python"] == "3.14"
    assert manifest["wasmtime"] == "51.0.0" and manifest["componentize_py"] == "0.25.1"
    assert [(r["method"], r["path"]) for r in manifest["routes"]["routes"]] == [("GET", "/total"), ("GET", "/lazy-dep")]
    assert manifest["default_limits"] == Limits().as_dict()


def test_same_inputs_give_the_same_bundle(bundle_store, runtime, package_bundle, package_zip, wheelhouse, tmp_path):
    copy = tmp_path / "elsewhere.zip"
    copy.write_bytes(package_zip.read_bytes())
    again = build(copy, bundle_store, requirements=["tinydep==1.2.0"], entry="shop.api", wheelhouse=wheelhouse, runtime=runtime)
    assert again.cached
    assert again.bundle.hash == package_bundle.hash


def test_bundles_import_cpythons_compiled_libraries_from_shared_layers(bundle_store, package_bundle, build_app):
    other = build_app(EXAMPLE)  # another app, another dependency set
    layers = package_bundle.manifest["layers"]
    assert layers and other.manifest["layers"] == layers  # stored once for both
    for sha256 in layers:
        assert hashlib.sha256(bundle_store.layer_path(sha256).read_bytes()).hexdigest() == sha256
    for bundle in (package_bundle, other):
        component = bundle_store.component_wasm(bundle)
        assert component_layers.layer_imports(component) == layers
        split_again, more = component_layers.split(component)
        assert more == {} and split_again == component  # nothing large and code-only left inside


def test_the_component_is_stored_once_compressed_and_decompresses_to_its_recorded_identity(bundle_store, package_bundle):
    manifest = package_bundle.manifest
    stored = package_bundle.component_path
    assert stored.name == "component.wasm.zst" and not (package_bundle.path / "component.wasm").exists()
    assert stored.stat().st_size == manifest["component_zst_bytes"] < manifest["component_bytes"] / 2
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == manifest["component_zst_sha256"]
    component = bundle_store.component_wasm(package_bundle)
    assert len(component) == manifest["component_bytes"]
    assert hashlib.sha256(component).hexdigest() == manifest["component_sha256"]


def test_an_app_without_fastapi_vendors_the_dependencies_the_layer_also_holds(bundle_store, wheelhouse, tmp_path):
    make_wheel(wheelhouse, "needs-idna", "1.0", requires_dist=["idna>=3"])
    make_wheel(wheelhouse, "idna", "3.7")
    source = tmp_path / "app.py"
    source.write_text("import idna\nfrom wasmgate import App\napp = App()\n")
    bundle = build(source, bundle_store, requirements=["needs-idna"], wheelhouse=wheelhouse).bundle
    assert {wheel["name"]: wheel["version"] for wheel in bundle.manifest["lock"]} == {"needs-idna": "1.0", "idna": "3.7"}
    assert bundle.manifest["provided"] == {}  # no FastAPI layer for it


def test_a_requirement_needing_pydantic_brings_the_whole_layer(bundle_store, wheelhouse, tmp_path):
    make_wheel(wheelhouse, "settings-lib", "1.0", requires_dist=["pydantic>=2", "typing-inspection>=0.4"])
    make_wheel(wheelhouse, "typing-inspection", "0.4.0")  # the layer has 0.4.5: that one is used
    source = tmp_path / "app.py"
    source.write_text("import settings_lib\nfrom wasmgate import App\napp = App()\n")  # no import of pydantic
    lines: list[str] = []
    bundle = build(source, bundle_store, requirements=["settings-lib"], wheelhouse=wheelhouse, log=lines.append).bundle
    assert [wheel["name"] for wheel in bundle.manifest["lock"]] == ["settings-lib"]
    assert bundle.manifest["provided"]["typing-inspection"] == "0.4.5"
    assert any(line.startswith("resolving again against the sandbox's FastAPI layer (pydantic") for line in lines)


def test_native_package_is_rejected_by_name(bundle_store, wheelhouse, tmp_path):
    source = tmp_path / "app.py"
    source.write_text("from wasmgate import App\napp = App()\n")
    with pytest.raises(BuildError) as caught:
        build(source, bundle_store, requirements=["fastnative"], wheelhouse=wheelhouse)
    assert "fastnative" in caught.value.message and "native" in caught.value.message


def _build_text(bundle_store, runtime, tmp_path: Path, text: str) -> BuildError:
    source = tmp_path / "app.py"
    source.write_text(text)
    with pytest.raises(BuildError) as caught:
        build(source, bundle_store, runtime=runtime)
    return caught.value


def test_syntax_error_names_file_and_line(bundle_store, runtime, tmp_path):
    error = _build_text(bundle_store, runtime, tmp_path, "from wasmgate import App\napp = App()\n\ndef broken(:\n    pass\n")
    assert error.details["file"] == "app.py"
    assert error.details["line"] == 4
    assert "syntax error" in error.message


def test_module_without_app_says_so(bundle_store, runtime, tmp_path):
    error = _build_text(bundle_store, runtime, tmp_path, "from wasmgate import App\nsomething = App()\n")
    assert "must define `app = wasmgate.App()`" in error.message
    said = error.message + repr(error.details)
    for host_detail in ("backtrace", "0x", ".rs", "wasmtime", str(tmp_path), sys.prefix):
        assert host_detail not in said  # the engine's backtrace and host paths stay on the host


def test_tool_output_is_shown_without_host_details():
    output = (
        'Traceback (most recent call last):\n  File "/0/app.py", line 2, in <module>\n'
        "error: cannot read /tmp/build-1234/wheels/x.whl (see https://pypi.org/simple/x/)\n"
        "   4: 0x3a0384 - libpython3.14.so!_PyErr_PrintEx\n"
        "Stack backtrace:\n   0: anyhow::Error::new\n             at /rustc/1234/library/core/src/ops.rs:250\n"
    )
    assert without_host_details(output) == (
        'Traceback (most recent call last):\n  File "/0/app.py", line 2, in <module>\n'
        "error: cannot read <host path> (see https://pypi.org/simple/x/)"
    )


def test_import_error_shows_the_guest_traceback(bundle_store, runtime, tmp_path):
    error = _build_text(bundle_store, runtime, tmp_path, "from wasmgate import App\nimport not_installed_anywhere\napp = App()\n")
    assert "No module named 'not_installed_anywhere'" in error.message
    assert 'File "/0/app.py", line 2' in error.details["guest_traceback"]
    assert error.details["line"] == 2


def test_oversized_source_is_refused(bundle_store, tmp_path):
    source = tmp_path / "app.py"
    source.write_text("from wasmgate import App\napp = App()\n" + "#" * 2000)
    with pytest.raises(BuildError, match="limit"):
        build(source, bundle_store, max_source_bytes=1000)


def test_missing_source_and_bad_entry(bundle_store, tmp_path):
    with pytest.raises(BuildError, match="does not exist"):
        build(tmp_path / "nope.py", bundle_store)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("")
    (tmp_path / "pkg" / "b.py").write_text("")
    with pytest.raises(BuildError, match="cannot tell which module"):
        build(tmp_path / "pkg", bundle_store)


def test_build_never_writes_into_the_source_directory(bundle_store, runtime, tmp_path):
    source_dir = tmp_path / "src"
    source_dir.mkdir()
    (source_dir / "app.py").write_text("from wasmgate import App\napp = App()\n\n@app.get('/')\ndef root():\n    return 'ok'\n")
    before = sorted(p.relative_to(source_dir) for p in source_dir.rglob("*"))
    build(source_dir, bundle_store, runtime=runtime)
    assert sorted(p.relative_to(source_dir) for p in source_dir.rglob("*")) == before
