"""FastAPI apps in the sandbox: what the pool does before a request, unhandled exceptions, and
the requirements and pins of the sandbox's FastAPI layer.

The differential tests (tests/fastapi_compat) compare answers with native FastAPI; these
check what callers cannot see: that warming a FastAPI app's instance runs none of the
author's code, and where a crash's traceback goes.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import time
from pathlib import Path

import pytest
import wasmtime

from builder import framework_layer, wasm_binary
from builder.build import build
from builder.errors import BuildError
from runtime import Limits, PoolBudget, Runtime, SandboxRequest

LIMITS = Limits(timeout_ms=10_000)


@pytest.fixture(scope="module")
def probe(build_app):
    # Naming fastapi in the requirements is allowed: the sandbox's release is used.
    return build_app("fastapi_probe.py", requirements=["fastapi>=0.100"])


def wait_for(predicate, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_warmed_instances_have_run_no_author_code(bundle_store, probe):
    runtime = Runtime(bundle_store, pool=PoolBudget(ready=2, depth=2, fillers=1, busy_s=0))
    try:
        runtime.invoke(probe, SandboxRequest("GET", "/"), LIMITS)  # a miss: the bundle is hot from now on
        answers = []
        for method in ("GET", "POST", "OPTIONS", "GET"):
            wait_for(lambda: runtime.pool.stats()["ready"] >= 1)
            invocation = runtime.invoke(probe, SandboxRequest(method, "/anything"), LIMITS)
            assert invocation.report.premade
            answers.append(json.loads(invocation.response.body)["calls"])
        # The warm-up ran FastAPI's request path, yet neither the author's middleware nor
        # the catch-all route saw it: each request is the instance's first.
        assert answers == [{"middleware": 1, "handler": 1, "module": 1}] * 4
        assert runtime.pool.stats()["warmed"] >= 4
    finally:
        runtime.close()


def test_a_warm_up_request_never_reaches_the_app_whoever_sends_it(runtime, probe):
    """The pool's warm-up request goes through `handle` as a request does; the guest runs its own
    warm-up for it, never the app (whose catch-all would answer this one with its counts)."""
    from runtime.instance import WARM_METHOD

    invocation = runtime.invoke(probe, SandboxRequest(WARM_METHOD, "/anything"), LIMITS)
    assert (invocation.response.status, invocation.response.body) == (204, b"")


def test_the_route_table_lists_the_routes_of_included_routers(runtime, probe):
    routes = {(route["method"], route["path"]) for route in probe.routes}
    assert ("GET", "/routed/{item}") in routes and ("GET", "/client") in routes
    assert not any(path.startswith("/hidden") for _, path in routes)  # include_in_schema=False
    for path, answer in (("/routed/x", {"routed": "x"}), ("/hidden/y", {"hidden": "y"})):
        assert json.loads(runtime.invoke(probe, SandboxRequest("GET", path), LIMITS).response.body) == answer


def test_invoke_local_sends_form_fields_as_the_gateway_does(probe, data_dir, monkeypatch, capsysbinary):
    from cli.main import main

    monkeypatch.setenv("WASMGATE_DATA_DIR", str(data_dir))
    code = main(["invoke-local", str(probe.path), "--method", "POST", "--path", "/form",
                 "--form", "name=ann", "--form", "tags=a", "--form", "tags=b"])
    assert code == 0 and json.loads(capsysbinary.readouterr().out) == {"name": "ann", "tags": ["a", "b"]}


def test_an_unhandled_exception_answers_as_fastapi_and_keeps_the_traceback(runtime, probe):
    invocation = runtime.invoke(probe, SandboxRequest("GET", "/boom"), LIMITS)
    assert invocation.response.status == 500
    assert invocation.response.body == b"Internal Server Error"
    assert ("content-type", "text/plain; charset=utf-8") in invocation.response.headers
    assert "RuntimeError: kaboom from the handler" in invocation.report.stderr


def test_a_plain_asgi_app_runs_without_starlette_or_anyio(build_app, runtime):
    # Any object with `async __call__(scope, receive, send)` is an ASGI app; the adapter's
    # bridges for Starlette and anyio are not needed by one that uses neither.
    bundle = build_app("""
        class Echo:
            async def __call__(self, scope, receive, send):
                if scope["type"] != "http":
                    return
                message = await receive()
                await send({"type": "http.response.start", "status": 201,
                            "headers": [(b"x-path", scope["path"].encode())]})
                await send({"type": "http.response.body", "body": message["body"][::-1]})

        app = Echo()
    """)
    invocation = runtime.invoke(bundle, SandboxRequest("POST", "/a/b", body=b"olleh"), LIMITS)
    assert (invocation.response.status, invocation.response.body) == (201, b"hello")
    assert ("x-path", "/a/b") in invocation.response.headers


def test_the_app_gets_the_callers_address_and_builds_urls_under_the_apis_mount(runtime, probe):
    from runtime.marshalling import context_header

    host = [("host", "gw.example:8000")]
    context = context_header(("203.0.113.9", 4711), "/run/abc123")
    request = SandboxRequest("GET", "/client", headers=[*host, context]).with_env({"STAGE": "test"})
    answer = json.loads(runtime.invoke(probe, request, LIMITS).response.body)
    assert answer == {"client": ["203.0.113.9", 4711], "headers": ["host"],  # the host's own taken off
                      "path": "/client", "url_for": "http://gw.example:8000/run/abc123/client"}
    redirect = runtime.invoke(probe, SandboxRequest("GET", "/absolute-redirect", headers=[*host, context]), LIMITS)
    assert redirect.response.header("location") == "http://gw.example:8000/run/abc123/elsewhere/?a=1"
    # Without them (`wasmgate invoke-local`): no caller, the app at the host's root, as natively.
    answer = json.loads(runtime.invoke(probe, SandboxRequest("GET", "/client", headers=host), LIMITS).response.body)
    assert (answer["client"], answer["url_for"]) == (None, "http://gw.example:8000/client")
    redirect = runtime.invoke(probe, SandboxRequest("GET", "/absolute-redirect", headers=host), LIMITS).response
    assert redirect.header("location") == "http://gw.example:8000/elsewhere/?a=1"


@pytest.mark.parametrize("startup, message", [
    ("raise RuntimeError('no model file at /models/answer.bin')", "RuntimeError: no model file at /models/answer.bin"),
    ("await asyncio.Event().wait()",  # nothing can ever set it: the build fails at once, it does not hang
     "it waits for something that never comes (nothing is scheduled on its event loop)"),
], ids=["raises", "waits-forever"])
def test_a_lifespan_startup_that_fails_fails_the_build_naming_its_error(bundle_store, tmp_path, startup, message):
    source = tmp_path / "app.py"
    source.write_text(
        "import asyncio\n"
        "from contextlib import asynccontextmanager\n"
        "from fastapi import FastAPI\n\n\n"
        "@asynccontextmanager\n"
        "async def lifespan(app):\n"
        f"    {startup}\n"
        "    yield\n\n\n"
        "app = FastAPI(lifespan=lifespan)\n"
    )
    with pytest.raises(BuildError) as failed:
        build(source, bundle_store)
    assert failed.value.message == f"the app's lifespan startup failed: {message}"
    assert "WASMGATE" not in repr(failed.value.details)  # the guest's marker stays between guest and builder


# One app folder (a FastAPI build costs ~10 s) for relative paths and for libraries that publish
# only platform wheels.
SITE_APP = """
import json

import yaml
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic_settings import BaseSettings

app = FastAPI()
app.mount("/static", StaticFiles(directory="static"), name="static")
templates = Jinja2Templates(directory="templates")
templates.get_template("item.html")  # compiled at import: at build time, into the snapshot
with open("site.yaml") as file:
    SITE = yaml.safe_load(file)


@app.get("/config")
def config():
    with open("data/config.json") as file:
        return json.load(file)


@app.get("/items/{item_id}", response_class=HTMLResponse)
async def read_item(request: Request, item_id: str):
    context = {"id": item_id, "tags": SITE["tags"], "note": request.query_params.get("note", "")}
    return templates.TemplateResponse(request=request, name="item.html", context=context)


@app.get("/site")
def site():
    return {"site": SITE, "libyaml": yaml.__with_libyaml__, "stage": Settings().stage}


class Settings(BaseSettings):  # pydantic-settings: it requires pydantic, which the sandbox provides
    stage: str = "native"


@app.post("/packed")
def packed(payload: dict):
    import msgpack  # here, so that the app imports natively without it (not in the test extra)

    return {"back": msgpack.unpackb(msgpack.packb(payload)), "impl": msgpack.Packer.__module__}
"""
SITE_REQUIREMENTS = ["jinja2>=3.1", "pyyaml>=6", "pydantic-settings>=2", "msgpack>=1"]


@pytest.fixture(scope="module")
def site(build_app, tmp_path_factory):
    """The app's folder and its bundle."""
    folder = tmp_path_factory.mktemp("site")
    for directory in ("static", "data", "templates"):
        (folder / directory).mkdir()
    (folder / "app.py").write_text(SITE_APP)
    (folder / "static" / "hello.txt").write_text("hello, static\n")
    (folder / "data" / "config.json").write_text('{"units": "metric"}')
    (folder / "templates" / "item.html").write_text(
        "<h1>{{ id }}</h1>{% for t in tags %}<li>{{ t }}</li>{% endfor %}<p>{{ note }}</p>\n")
    (folder / "site.yaml").write_text("title: Shop\ntags: [new, <sale>]\n")
    return folder, build_app(folder, requirements=SITE_REQUIREMENTS)


def _native_client(folder: Path, monkeypatch):
    from fastapi.testclient import TestClient

    monkeypatch.chdir(folder)  # natively, the app is served from its folder (`uvicorn app:app`)
    spec = importlib.util.spec_from_file_location("site_app", folder / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return TestClient(module.app)


def test_relative_paths_resolve_in_the_apps_folder_as_when_served_from_it(site, runtime, monkeypatch):
    folder, bundle = site
    native = _native_client(folder, monkeypatch)
    for path in ("/static/hello.txt", "/config", "/static/missing.txt"):
        sandboxed = runtime.invoke(bundle, SandboxRequest("GET", path), LIMITS).response
        expected = native.get(path)
        assert (sandboxed.status, sandboxed.body) == (expected.status_code, expected.content), path
    # StaticFiles' file reading is imported at build time: serving a file is cheap in a fresh instance.
    assert runtime.invoke(bundle, SandboxRequest("GET", "/static/hello.txt"), LIMITS).report.fuel_used < 20_000_000


def test_jinja2_templates_pyyaml_and_pydantic_settings_build_and_run(site, runtime, monkeypatch):
    """MarkupSafe (Jinja2's), PyYAML and msgpack publish only platform wheels; their C code is
    an optional speed-up, so the build installs one without its extension modules.
    pydantic-settings requires pydantic, whose core is native: the sandbox's release is used."""
    folder, bundle = site
    locked = {wheel["name"]: wheel["filename"] for wheel in bundle.manifest["lock"]}
    assert all("-cp314-" in locked[name] for name in ("markupsafe", "pyyaml", "msgpack"))  # platform wheels, locked
    assert "pydantic-settings" in locked and "pydantic" not in locked and "pydantic-core" not in locked
    assert "typing-inspection" not in locked  # pydantic's, and so the layer's: not vendored a second time
    vendored = bundle.path / "python"
    assert list(vendored.rglob("markupsafe/_native.py")) and not list(vendored.rglob("markupsafe/*.so"))
    assert not list(vendored.rglob("yaml/*.so")) and not list(vendored.rglob("_yaml*.so"))
    native = _native_client(folder, monkeypatch)
    cases = [("/items/7", "/items/7", [("note", "<script>x</script>")]), ("/items/<b>", "/items/%3Cb%3E", []),
             ("/site", "/site", [])]
    fuel = {}
    for path, url, query in cases:
        request = SandboxRequest("GET", path, query=query).with_env({"STAGE": "sandboxed"})
        invocation = runtime.invoke(bundle, request, LIMITS)
        expected = native.get(url, params=query)
        assert invocation.response.status == expected.status_code == 200
        if path == "/site":  # the API's variables reach BaseSettings through os.environ
            assert json.loads(invocation.response.body) == {**expected.json(), "libyaml": False, "stage": "sandboxed"}
        else:
            assert invocation.response.body == expected.content and b"&lt;" in expected.content
        assert dict(invocation.response.headers)["content-type"] == expected.headers["content-type"]
        fuel[path] = invocation.report.fuel_used
    # The template was compiled at build time: rendering it takes ~1.4 M fuel, compiling it ~20 M more.
    assert fuel["/items/7"] < 10_000_000
    payload = {"a": [1, 2.5, "x"], "b": None, "c": {"d": True}}
    invocation = runtime.invoke(bundle, SandboxRequest("POST", "/packed", headers=[("content-type", "application/json")],
                                                       body=json.dumps(payload).encode()), LIMITS)
    assert json.loads(invocation.response.body) == {"back": payload, "impl": "msgpack.fallback"}
    assert not list(vendored.rglob("msgpack/*.so"))


def test_requirements_naming_the_layer_are_provided_and_bad_pins_refused(bundle_store, probe, tmp_path):
    source = tmp_path / "fastapi_probe.py"  # the same entry module: the same bundle
    source.write_text((Path(__file__).parent / "apps" / "fastapi_probe.py").read_text())
    lines: list[str] = []
    result = build(source, bundle_store, requirements=["fastapi>=0.100"], log=lines.append)
    assert result.cached and result.bundle.hash == probe.hash
    assert "  fastapi: provided by the sandbox (fastapi 0.165.0)" in lines
    assert result.bundle.manifest["provided"]["pydantic"] == framework_layer.PACKAGES["pydantic"][0]
    with pytest.raises(BuildError) as refused:
        build(source, bundle_store, requirements=["pydantic<2"])
    assert "the sandbox provides pydantic 2.14.4" in refused.value.message
    assert refused.value.details["reason"] == "provided-package"


def test_extras_of_a_provided_package_add_their_dependencies_but_fastapis_own_do_not(bundle_store):
    lines: list[str] = []
    kept, provided = framework_layer.split_requirements(
        ["pydantic[email]>=2", "fastapi[standard]>=0.100", "starlette", "httpx"], lines.append)
    assert provided and kept == ["pydantic[email]>=2", "httpx"]  # the resolver adds what [email] needs
    assert any(line.startswith("  fastapi[standard]: not installed") for line in lines)
    extras_of = framework_layer.extras_of(bundle_store.root, lines.append)  # read from the layer's metadata
    requires, declared = extras_of("pydantic")
    assert "email" in declared and any(line.startswith("email-validator") and "email" in line for line in requires)
    assert extras_of("fastapi")[0] == () and "standard" in extras_of("fastapi")[1]


def test_the_layer_is_wanted_by_imports_of_fastapi_starlette_or_pydantic():
    assert framework_layer.wanted({"app.py": b"from fastapi import FastAPI\n"})
    assert framework_layer.wanted({"pkg/models.py": b"import pydantic.fields\n", "app.py": b"x = 1\n"})
    assert framework_layer.wanted({"app.py": b"def f():\n    from starlette.responses import Response\n"})
    assert not framework_layer.wanted({"app.py": b"from wasmgate import App\nimport fastapi_like\n"})
    assert not framework_layer.wanted({"app.py": b"from . import fastapi\n", "data.txt": b"import fastapi"})


def test_native_tests_run_the_releases_the_layer_pins():
    for name in ("fastapi", "starlette", "pydantic", "pydantic-core"):
        assert importlib.metadata.version(name) == framework_layer.PACKAGES[name][0], name


def test_wasm_binary_renames_imports_and_marks_a_shared_library():
    module = wasmtime.wat2wasm(
        '(module (import "env" "clock_gettime" (func (param i32 i32) (result i32)))'
        ' (import "env" "mem" (memory 1)) (import "GOT.mem" "g" (global (mut i32))))'
    )
    renamed = wasm_binary.rename_imports(module, {("env", "clock_gettime"): "other_clock"})
    assert wasm_binary.imports(renamed) == [("env", "other_clock"), ("env", "mem"), ("GOT.mem", "g")]
    wasmtime.Module.validate(wasmtime.Engine(), renamed)
    with pytest.raises(wasm_binary.WasmFormatError):
        wasm_binary.rename_imports(module, {("env", "absent"): "x"})
    library = wasm_binary.as_shared_library(module)
    first_section = next(wasm_binary.sections(library))
    assert first_section[0] == 0 and library[first_section[1] + 1 : first_section[1] + 9] == b"dylink.0"
    with pytest.raises(wasm_binary.WasmFormatError):
        list(wasm_binary.sections(b"not wasm"))
