"""`wasmgate serve --example`: deploy the README's example API at start and say how to call it."""

from __future__ import annotations

import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hello.py"
EXAMPLE_NAME = "hello"


def deploy_example(svc) -> None:  # noqa: ANN001 - gateway.services.Services (imports this module's users)
    """Deploy the example API (once), and print how to call it with a fresh key."""
    from gateway.state.specs import ApiSpec

    deployments = svc.deployments
    existing = next((api for api in deployments.list_apis() if api["name"] == EXAMPLE_NAME), None)
    if existing is None:
        print(f"deploying {EXAMPLE} as {EXAMPLE_NAME!r} (the first build takes a minute)...", file=sys.stderr, flush=True)
        created = deployments.create(ApiSpec(name=EXAMPLE_NAME), EXAMPLE, lambda line: None)
        api_id, key = created["id"], created["api_key"]
    else:
        api_id, key = existing["id"], deployments.create_key(existing["id"])["api_key"]
    base = f"http://{svc.settings.host}:{svc.settings.port}/run/{api_id}"
    print(
        f"""
The example API is live. Call it:

    export KEY={key}
    curl -H "X-API-Key: $KEY" "{base}/hello/world?times=2"
    curl -H "X-API-Key: $KEY" -H "content-type: application/json" -d '{{"values": [1, 2, 3]}}' {base}/sum
    curl -H "X-API-Key: $KEY" -F file=@{EXAMPLE} -F label=example {base}/upload
    curl -H "X-API-Key: $KEY" -o hello.png {base}/png
    open {base}/docs
""",
        flush=True,
    )
