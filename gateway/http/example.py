"""`wasmgate serve --example`: deploy the README's example API at start and say how to call it."""

from __future__ import annotations

import sys
from pathlib import Path

from gateway.http.readiness import holds_readiness

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hello.py"
EXAMPLE_NAME = "hello"
# In the data dir: the id of the example key the last start printed, revoked at the next, so
# that restarts do not pile up live keys (keys are stored hashed: one cannot be printed again).
KEY_FILE = "example-key-id"


@holds_readiness
def deploy_example(svc) -> list[str]:  # noqa: ANN001 - gateway.services.Services (imports this module's users)
    """Deploy the example API (once, showing the build's progress), and print how to call it
    with a fresh key; the key printed by the previous start is revoked. Returns its id: the
    gateway is not ready before it serves it."""
    from gateway.state.specs import ApiSpec

    deployments = svc.deployments
    existing = next((api for api in deployments.list_apis() if api["name"] == EXAMPLE_NAME), None)
    if existing is None:
        print(f"deploying {EXAMPLE} as {EXAMPLE_NAME!r} (the first build takes a minute)...", file=sys.stderr, flush=True)
        created = deployments.create(ApiSpec(name=EXAMPLE_NAME), EXAMPLE, _progress)
        api_id, key, key_id = created["id"], created["api_key"], created["key_id"]
    else:
        api_id = existing["id"]
        fresh = deployments.create_key(api_id)
        key, key_id = fresh["api_key"], fresh["id"]
    _replace_previous_key(svc, api_id, key_id)
    base = f"http://{svc.settings.host}:{svc.settings.port}/run/{api_id}"
    print(
        f"""
The example API is live. Call it:

    export KEY={key}
    curl -H "X-API-Key: $KEY" "{base}/hello/world?times=2"
    curl -H "X-API-Key: $KEY" -H "content-type: application/json" -d '{{"values": [1, 2, 3]}}' {base}/sum
    curl -H "X-API-Key: $KEY" -F file=@{EXAMPLE} -F label=example {base}/upload
    curl -H "X-API-Key: $KEY" -o hello.png {base}/png

Its docs: {base}/docs
""",
        flush=True,
    )
    return [api_id]


def _progress(line: str) -> None:
    print(f"  {line}", file=sys.stderr, flush=True)


def _replace_previous_key(svc, api_id: str, key_id: str) -> None:  # noqa: ANN001
    from gateway.errors import ApiError  # (FastAPI's import, which `wasmgate --help` should not pay for)

    record = svc.settings.data_dir / KEY_FILE
    try:
        previous = record.read_text().strip()
    except OSError:
        previous = ""
    if previous and previous != key_id:
        try:
            svc.deployments.revoke_key(api_id, previous)
        except ApiError:
            pass  # revoked already, by hand
    record.write_text(key_id)
