"""`GET /readyz` of `wasmgate serve --example --workers 2` while the example API builds.

The data dir has a store of its own, so the example is really built (tens of seconds): until
then every process answers 503 NOT_READY; a process answers 200 only once the example is
deployed and it serves it, and then the printed key works on every process.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from gateway_support import ServerProcess

HANG_BOUND_S = 600


def readyz_of_fresh_connections(server: ServerProcess, n: int) -> list[httpx.Response]:
    def one(_: int) -> httpx.Response:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            return client.get("/readyz")

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(n)))


def test_readyz_waits_until_every_process_serves_the_example(tmp_path):
    server = ServerProcess(tmp_path / "data", tmp_path / "server.log", args=("--example", "--workers", "2"))
    server.start(timeout=120, until="/healthz")
    try:
        unready, ready = set(), set()
        deadline = time.monotonic() + HANG_BOUND_S
        while len(ready) < 2 and time.monotonic() < deadline:
            answers = readyz_of_fresh_connections(server, 8)
            printed = server.log_path.read_text()  # read after the answers
            for answer in answers:
                if answer.status_code == 503:
                    error = answer.json()["error"]
                    assert error["code"] == "NOT_READY", error
                    unready.add(error["details"]["process"])
                else:
                    assert answer.status_code == 200, answer.text
                    assert "The example API is live" in printed  # no process is ready before the deploy ends
                    ready.add(answer.json()["process"])
            time.sleep(0.2)
        assert len(unready) == 2 and len(ready) == 2, (unready, ready, server.log_path.read_text()[-3000:])

        key = printed.split("export KEY=", 1)[1].split()[0]
        api_id = printed.split("/run/", 1)[1].split("/", 1)[0]
        for answer in readyz_of_fresh_connections(server, 8):
            assert answer.status_code == 200
        with ThreadPoolExecutor(4) as pool:
            calls = list(pool.map(
                lambda _: httpx.get(f"{server.url}/run/{api_id}/hello/x", headers={"X-API-Key": key}, timeout=60),
                range(8),
            ))
        assert [call.json() for call in calls] == [{"message": "hello x"}] * 8
    finally:
        server.stop()
