"""The docs pages in a real headless Chromium, against `wasmgate serve` over HTTP.

Each page must render its operations from assets the gateway serves itself: every request
the browser makes is recorded and must go to the gateway, and no console or CSP error may
show. A private API's page asks for a key, fetches its document with it and carries it in
"Try it out". An API whose own routes answer /docs and /openapi.json keeps them; the
gateway's pages of it stay under /_wasmgate/apis/{id}/.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from browser_support import Browser, Page
from gateway_support import (  # noqa: F401
    ADMIN,
    ServerProcess,
    data_dir_sharing_store,
    deploy_request,
    gateway_sources,
)

FASTAPI_PROBE = ("fastapi_probe.py", (Path(__file__).parent / "apps" / "fastapi_probe.py").read_text())
PATHS = "Array.from(document.querySelectorAll('.opblock-summary-path')).map(e => e.innerText)"


@pytest.fixture(scope="module")
def fastapi_probe(build_app):
    """Its catch-all route answers /docs and /openapi.json (built as test_fastapi_sandbox builds it)."""
    return build_app("fastapi_probe.py", requirements=["fastapi>=0.100"])


@pytest.fixture(scope="module")
def server(gateway_sources, fastapi_probe, tmp_path_factory, bundle_store):
    root = tmp_path_factory.mktemp("docs-browser")
    process = ServerProcess(data_dir_sharing_store(root / "data", bundle_store), root / "server.log")
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def apis(server, gateway_sources) -> dict[str, dict]:
    deploys = {
        "hello": deploy_request("hello", gateway_sources["hello"]),
        "secret": deploy_request("secret", gateway_sources["hello"], private=True),
        "own-docs": deploy_request("own-docs", FASTAPI_PROBE, requirements="fastapi>=0.100"),
    }
    created = {}
    with httpx.Client(base_url=server.url, timeout=300) as client:
        for name, request in deploys.items():
            response = client.post("/v1/apis", headers=ADMIN, **request)
            assert response.status_code == 201, response.text
            created[name] = response.json()
    return created


@pytest.fixture(scope="module")
def browser():
    browser = Browser()
    yield browser
    browser.close()


def assert_stayed_on_the_gateway(page: Page, server: ServerProcess, messages: tuple[str, ...] = ()) -> None:
    """Every request went to the gateway, and the console shows no error but `messages`."""
    urls = [request["url"] for request in page.requests]
    assert urls and all(url.startswith(server.url + "/") or url.startswith("data:") for url in urls), urls
    assert page.messages == list(messages)


def test_the_control_plane_docs_list_its_operations(server, browser):
    page = browser.open(server.url + "/docs")
    paths = page.wait_for(PATHS)
    assert {"/v1/apis", "/v1/apis/{ref}", "/v1/apis/{ref}/rollback", "/v1/apis/{ref}/keys", "/v1/jobs/{job_id}"} <= set(paths)
    assert not any(path.startswith("/run") for path in paths)
    assert page.evaluate("!!document.querySelector('.btn.authorize')")  # the admin token's scheme
    assert_stayed_on_the_gateway(page, server)


def test_an_api_docs_list_its_routes(server, apis, browser):
    page = browser.open(server.url + apis["hello"]["endpoint"] + "/docs")
    assert {"/hello/{name}", "/sum", "/upload", "/png"} <= set(page.wait_for(PATHS))
    assert_stayed_on_the_gateway(page, server)


def test_a_private_api_docs_ask_for_the_key_and_try_it_out_with_it(server, apis, browser):
    secret = apis["secret"]
    page = browser.open(server.url + secret["endpoint"] + "/docs")
    page.wait_for("document.readyState === 'complete'")
    assert page.evaluate("!!document.querySelector('#wasmgate-key input[type=password]')")
    assert not any(r["url"].endswith("/openapi.json") for r in page.requests)  # not before the key
    submit = """(key => {
        const form = document.getElementById('wasmgate-key');
        form.elements.key.value = key;
        form.requestSubmit();
    })(%s)"""
    page.evaluate(submit % json.dumps("wg_wrong_key"))
    refused = "!document.getElementById('wasmgate-key').hidden && document.querySelector('output').value"
    assert "That key was refused" in page.wait_for(refused)
    page.evaluate(submit % json.dumps(secret["api_key"]))
    assert "/hello/{name}" in page.wait_for(PATHS)
    documents = [r for r in page.requests if r["url"].endswith(secret["endpoint"] + "/openapi.json")]
    assert [r["headers"]["X-API-Key"] for r in documents] == ["wg_wrong_key", secret["api_key"]]
    # "Try it out" on GET /hello/{name} sends the key: the call succeeds.
    page.evaluate("""(() => {
        const operation = document.getElementById('operations-default-hello_get');
        operation.querySelector('.opblock-summary-control').click();
    })()""")
    page.wait_for("!!document.querySelector('#operations-default-hello_get .try-out__btn')")
    page.evaluate("document.querySelector('#operations-default-hello_get .try-out__btn').click()")
    page.wait_for("!!document.querySelector('#operations-default-hello_get input[placeholder=name]')")
    page.evaluate("""(() => {
        const input = document.querySelector('#operations-default-hello_get input[placeholder=name]');
        const setter = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;
        setter.call(input, 'browser');
        input.dispatchEvent(new Event('input', {bubbles: true}));
    })()""")
    page.evaluate("new Promise(done => setTimeout(done, 1000))")  # Swagger UI debounces its inputs
    page.evaluate("document.querySelector('#operations-default-hello_get .execute').click()")
    status = page.wait_for(
        "document.querySelector('#operations-default-hello_get .live-responses-table tbody .response-col_status')?.innerText"
    )
    assert status.strip() == "200"
    call = next(r for r in page.requests if "/hello/browser" in r["url"])
    assert call["headers"]["X-API-Key"] == secret["api_key"]
    refusal = "Failed to load resource: the server responded with a status of 403 (Forbidden)"
    assert_stayed_on_the_gateway(page, server, messages=(refusal,))


def test_the_page_of_a_private_api_is_public_its_document_is_not(server, apis):
    secret = apis["secret"]
    page = httpx.get(server.url + secret["endpoint"] + "/docs")
    assert page.status_code == 200 and secret["api_key"] not in page.text
    assert httpx.get(server.url + secret["endpoint"] + "/openapi.json").status_code == 401


def test_an_api_that_answers_docs_itself_keeps_them(server, apis, browser):
    own = apis["own-docs"]
    for path in ("docs", "openapi.json"):  # its catch-all route answers them: they are calls of it
        url = f"{server.url}{own['endpoint']}/{path}"
        assert httpx.get(url).status_code == 401
        response = httpx.get(url, headers={"X-API-Key": own["api_key"]})
        assert response.status_code == 200 and "/_wasmgate/" not in response.text
    logs = httpx.get(f"{server.url}/v1/apis/{own['id']}/logs", headers=ADMIN).json()["logs"]
    assert {"/docs", "/openapi.json"} <= {entry["path"] for entry in logs}
    reserved = f"/_wasmgate/apis/{own['id']}"
    assert "/boom" in httpx.get(server.url + reserved + "/openapi.json").json()["paths"]
    page = browser.open(server.url + reserved + "/docs")
    assert "/boom" in page.wait_for(PATHS)
    assert any(r["url"] == server.url + reserved + "/openapi.json" for r in page.requests)
    assert_stayed_on_the_gateway(page, server)
