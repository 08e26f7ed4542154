"""Swagger UI pages, with every asset served by the gateway itself (no CDN, no other origin).

Swagger UI's files come from the `swagger_ui_bundle` package (PyPI `swagger-ui-bundle-v2`),
the script that starts it from `static/docs.js`; all are served under the reserved prefix
`/_wasmgate/swagger/`. A page's Content-Security-Policy lets it load and call nothing but the
gateway. A page that needs an API key to read its document asks for one first (see docs.js):
the page itself holds nothing secret, so it needs no key.
"""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import APIRouter
from starlette.responses import FileResponse, HTMLResponse, Response
from swagger_ui_bundle import swagger_ui_path

from gateway.errors import not_found

PREFIX = "/_wasmgate/swagger"
_ASSETS = {
    "swagger-ui-bundle.js": Path(swagger_ui_path) / "swagger-ui-bundle.js",
    "swagger-ui.css": Path(swagger_ui_path) / "swagger-ui.css",
    "favicon.png": Path(swagger_ui_path) / "favicon-32x32.png",
    "docs.js": Path(__file__).parent / "static" / "docs.js",
}
_HEADERS = {
    "Content-Security-Policy": "; ".join([
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",  # Swagger UI's style attributes, the key form's <style>
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

router = APIRouter()


@router.get(PREFIX + "/{name}", include_in_schema=False)
def asset(name: str) -> Response:
    path = _ASSETS.get(name)
    if path is None:
        raise not_found(f"no asset {name}")
    return FileResponse(path, headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})


def page(title: str, openapi_url: str, ask_key: bool = False) -> HTMLResponse:
    """The Swagger UI page of the document at `openapi_url`; with `ask_key`, it asks for the
    API key to fetch it with."""
    key_form = """<form id="wasmgate-key">
<label>This API is private: its API key, to read its documentation
<input name="key" type="password" autocomplete="off" required></label>
<button type="submit">Show</button>
<output></output>
</form>
""" if ask_key else ""
    return HTMLResponse(f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)} - API docs</title>
<link rel="stylesheet" href="{PREFIX}/swagger-ui.css">
<link rel="icon" href="{PREFIX}/favicon.png">
<style>#wasmgate-key {{ font-family: sans-serif; max-width: 1460px; margin: 2em auto; padding: 0 20px }}
#wasmgate-key input {{ margin: 0 .5em; padding: .3em }}</style>
</head>
<body>
{key_form}<div id="swagger-ui" data-url="{html.escape(openapi_url)}"></div>
<script src="{PREFIX}/swagger-ui-bundle.js"></script>
<script src="{PREFIX}/docs.js"></script>
</body>
</html>
""", headers=_HEADERS)
