"""The corpus of hostile guests, through a real gateway over HTTP.

Each attack is one call to a hostile API (the modules beside this file, built once per session
as one app) with its exact outcome: status, and error code and reason for a failure. After
every attack: no secret reached the caller (the admin token, a marker in the gateway's
environment, host paths, another tenant's key), and a benign API on the same gateway still
answers. At the end the gateway's log holds no unhandled exception.
"""

from __future__ import annotations

import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from gateway_support import (  # noqa: F401
    ADMIN,
    ADMIN_TOKEN,
    ROOT,
    SOURCES,
    ServerProcess,
    data_dir_sharing_store,
    deploy_request,
    gateway_sources,
)

HERE = Path(__file__).parent
# API -> (the corpus module its attacks are in, deploy fields). A build costs ~6 s, so the
# four modules are built as one app (`_corpus`) that every API below deploys, each with its
# own limits: an attack on "waits" reaches the module's routes under the limits of "waits".
HOSTILE = {
    "output": ("hostile_output.py", {}),
    "waits": ("hostile_waits.py", {"limits": {"timeout_ms": 1000}}),
    "system": ("hostile_system.py", {}),
    # Fuel runs out long before the deadline, so a CPU bomb ends the same way on any machine.
    "compute": ("hostile_compute.py", {"limits": {"memory_mb": 64, "fuel": 300_000_000, "timeout_ms": 10_000}}),
    # The same module again, with the fuel to build deep structures: its stack bombs end as such.
    "deep": ("hostile_compute.py", {"limits": {"memory_mb": 64, "fuel": 20_000_000_000, "timeout_ms": 20_000}}),
}
MARKER = "marker-" + secrets.token_hex(8)
# What the gateway's log may never hold: the server layer failing on what a guest returned.
UNHANDLED = ("Exception in ASGI application", "LocalProtocolError", "unhandled error in", "Task exception was never retrieved")


@dataclass
class Attack:
    id: str
    api: str
    path: str
    status: int
    code: str | None = None
    reason: str | None = None
    method: str = "GET"
    request: dict = field(default_factory=dict)
    check: object = None  # a callable(response) for what the status does not say


def _empty(response: httpx.Response) -> None:
    assert response.content == b"" and "content-length" not in response.headers


def _framing(response: httpx.Response) -> None:
    assert response.content == b"short" and response.headers["content-length"] == "5"
    assert "transfer-encoding" not in response.headers and response.headers["x-request-id"] != "forged"


def _injection(response: httpx.Response) -> None:
    assert response.headers["x-good"] == "fine"
    assert "set-cookie" not in response.headers and "x-split" not in response.headers
    assert "x-nul" not in response.headers and "bad name" not in response.headers


def _binary(response: httpx.Response) -> None:
    assert response.content == bytes(range(256)) * 4


def _json(response: httpx.Response, expected: object) -> None:
    assert response.json() == expected


def _head(response: httpx.Response) -> None:
    assert response.content == b""


ESCAPES = [
    "etc-passwd", "proc-environ", "proc-maps", "dotdot-from-app", "dotdot-from-stdlib", "dotdot-from-request",
    "dotdot-to-the-store", "list-root", "list-host-root-dirs", "write-app-mount", "write-stdlib-mount", "write-request-mount",
    "write-root", "write-tmp", "mkdir-anywhere", "symlink-out", "chmod-app", "tcp-loopback", "udp-send",
    "dns-lookup", "listen", "fork", "subprocess", "os-system", "execv", "kill", "thread", "ctypes", "pwd",
    "rlimit", "signal-alarm",
]


def _blocked(response: httpx.Response) -> None:
    assert response.json()["blocked"] is True, response.json()


def _no_host_in_argv(response: httpx.Response) -> None:
    seen = response.json()
    # The working directory is the app's own folder, by its guest path: nothing of the host's.
    assert seen["cwd"] == "/0" and all(not part.startswith(("/tmp", "/work", "/root", "/home")) for part in seen["argv"])


def _own_upload_only(response: httpx.Response) -> None:
    seen = response.json()
    assert seen["files"] == ["mine.txt"] and len(seen["entries"]) == 1


ATTACKS = [
    # Answers HTTP forbids a body on: the body is dropped, the connection survives.
    Attack("status-204-with-body", "output", "/status/204", 204, check=_empty),
    Attack("status-304-with-body", "output", "/status/304", 304, check=_empty),
    Attack("head-on-a-get-route", "output", "/with-body", 200, method="HEAD", check=_head),
    # Statuses that are not a final HTTP answer: the API's error, typed by the runtime.
    Attack("status-100", "output", "/status/100", 500, "SANDBOX_ERROR", "invalid-response"),
    Attack("status-199", "output", "/status/199", 500, "SANDBOX_ERROR", "invalid-response"),
    Attack("status-600", "output", "/status/600", 500, "SANDBOX_ERROR", "invalid-response"),
    Attack("status-0", "output", "/status/0", 500, "SANDBOX_ERROR", "invalid-response"),
    # Headers: framing and injection attempts are dropped, the rest passes.
    Attack("framing-headers", "output", "/headers/framing", 200, check=_framing),
    Attack("header-injection", "output", "/headers/injection", 200, check=_injection),
    Attack("a-thousand-headers", "output", "/headers/many?n=1000", 200),
    # Response records forged past the SDK.
    Attack("forged-latin1-body", "output", "/forged/latin1", 500, "SANDBOX_ERROR", "invalid-response"),
    Attack("forged-status-overflow", "output", "/forged/status", 500, "SANDBOX_TRAP", "trap"),
    Attack("forged-header-types", "output", "/forged/headers", 500, "SANDBOX_TRAP", "trap"),
    Attack("forged-crash-report", "output", "/forged/error", 500, "SANDBOX_ERROR", "exception"),
    # Sizes and encodings.
    Attack("binary-body", "output", "/binary", 200, check=_binary),
    Attack("stdout-flood", "output", "/flood/stdout?mb=8", 200),
    Attack("oversized-body", "output", "/big?mb=3", 500, "SANDBOX_OUTPUT_TOO_LARGE", "output-too-large"),
    # Callers' JSON nested past the limit is the caller's error, checked before parsing.
    Attack("json-nested-1000-deep", "benign", "/sum", 422, "VALIDATION_ERROR", method="POST",
           request={"content": "[" * 1000 + "]" * 1000, "headers": {"content-type": "application/json"}}),
    Attack("json-100k-unclosed", "benign", "/sum", 422, "VALIDATION_ERROR", method="POST",
           request={"content": "{\"a\":" * 100_000, "headers": {"content-type": "application/json"}}),
    # Waiting: imports that poll without waiting, asyncio, select and sleeps; only a wait that
    # would outlive the deadline (1 s here) ends the call, as a timeout.
    Attack("import-asyncio", "waits", "/import/asyncio", 200, check=lambda r: _json(r, {"imported": "asyncio"})),
    Attack("import-selectors", "waits", "/import/selectors", 200),
    Attack("import-subprocess", "waits", "/import/subprocess", 200),
    Attack("asyncio-run-gather-wait-for", "waits", "/asyncio/run", 200,
           check=lambda r: _json(r, {"values": ["a", "b", "timed out"], "overlapped": True})),
    Attack("async-handler-with-tasks", "waits", "/asyncio/handler", 200, check=lambda r: _json(r, {"result": "task"})),
    Attack("asyncio-sleep-within-deadline", "waits", "/asyncio/sleep?seconds=0.05", 200),
    Attack("asyncio-sleep-past-deadline", "waits", "/asyncio/sleep?seconds=30", 504, "SANDBOX_TIMEOUT", "timeout"),
    Attack("asyncio-await-forever", "waits", "/asyncio/forever", 500, "SANDBOX_ERROR", "exception"),
    Attack("select-on-nothing-zero", "waits", "/select/0", 200, check=lambda r: _json(r, {"waited": 0.0})),
    Attack("select-on-nothing-short", "waits", "/select/0.1", 200, check=lambda r: _json(r, {"waited": 0.1})),
    Attack("select-on-nothing-past-deadline", "waits", "/select/30", 504, "SANDBOX_TIMEOUT", "timeout"),
    Attack("poll-zero-timeout", "waits", "/poll/zero", 200, check=lambda r: _json(r, {"events": []})),
    Attack("poll-on-stdin-past-deadline", "waits", "/poll/stdin", 504, "SANDBOX_TIMEOUT", "timeout"),
    Attack("sleep-past-deadline", "waits", "/sleep/30", 504, "SANDBOX_TIMEOUT", "timeout"),
    Attack("busy-then-sleep-past-deadline", "waits", "/busy-then-sleep", 504, "SANDBOX_TIMEOUT", "timeout"),
    # Ways out: host files, `..` from every mount, writes into every mount, sockets,
    # processes, threads, native code, host-only modules. Each must be blocked.
    *(Attack(f"escape-{name}", "system", f"/try/{name}", 200, check=_blocked) for name in ESCAPES),
    Attack("environment-is-empty", "system", "/environ", 200, check=lambda r: _json(r, {"environ": {}})),
    Attack("argv-and-cwd-say-nothing-of-the-host", "system", "/argv", 200, check=_no_host_in_argv),
    # No state survives a request: two calls, each the first its instance has seen.
    Attack("module-state-first-call", "system", "/state", 200, check=lambda r: _json(r, {"n": 1})),
    Attack("module-state-second-call", "system", "/state", 200, check=lambda r: _json(r, {"n": 1})),
    Attack("request-dir-holds-only-this-request", "system", "/request-dir", 200, method="POST",
           request={"files": {"mine": ("mine.txt", b"m")}}, check=_own_upload_only),
    # CPU, memory and stack bombs, in Python and in C.
    Attack("cpu-python-loop", "compute", "/cpu/python-loop", 504, "SANDBOX_FUEL_EXHAUSTED", "fuel"),
    Attack("cpu-big-power", "compute", "/cpu/big-power", 504, "SANDBOX_FUEL_EXHAUSTED", "fuel"),
    Attack("cpu-c-sum", "compute", "/cpu/c-sum", 504, "SANDBOX_FUEL_EXHAUSTED", "fuel"),
    Attack("cpu-regex-backtracking", "compute", "/cpu/regex-backtracking", 504, "SANDBOX_FUEL_EXHAUSTED", "fuel"),
    Attack("cpu-hash-loop", "compute", "/cpu/hash-loop", 504, "SANDBOX_FUEL_EXHAUSTED", "fuel"),
    Attack("memory-bytearray", "compute", "/memory/bytearray", 500, "SANDBOX_MEMORY_LIMIT", "memory"),
    Attack("memory-list-growth", "compute", "/memory/list-growth", 500, "SANDBOX_MEMORY_LIMIT", "memory"),
    Attack("memory-string-repeat", "compute", "/memory/string-repeat", 500, "SANDBOX_MEMORY_LIMIT", "memory"),
    Attack("memory-dict", "deep", "/memory/dict", 500, "SANDBOX_MEMORY_LIMIT", "memory"),
    Attack("stack-python-recursion", "deep", "/stack/python", 500, "SANDBOX_STACK_OVERFLOW", "stack"),
    Attack("stack-python-unlimited", "deep", "/stack/python-unlimited", 500, "SANDBOX_STACK_OVERFLOW", "stack"),
    Attack("stack-json-parser", "deep", "/stack/json-parser", 500, "SANDBOX_STACK_OVERFLOW", "stack"),
    Attack("stack-repr", "deep", "/stack/repr", 500, "SANDBOX_STACK_OVERFLOW", "stack"),
    Attack("stack-deepcopy", "deep", "/stack/deepcopy", 500, "SANDBOX_STACK_OVERFLOW", "stack"),
    Attack("stack-compiler", "deep", "/stack/compile", 500, "SANDBOX_STACK_OVERFLOW", "stack"),
    # Exits and BaseException subclasses.
    Attack("sys-exit", "compute", "/exit/sys-exit", 500, "SANDBOX_ERROR", "exception"),
    Attack("os-exit", "compute", "/exit/os-exit", 500, "SANDBOX_ERROR", "exit"),
    Attack("keyboard-interrupt", "compute", "/exit/keyboard-interrupt", 500, "SANDBOX_ERROR", "exception"),
    Attack("base-exception-subclass", "compute", "/exit/base-exception", 500, "SANDBOX_ERROR", "exception"),
    Attack("generator-exit", "compute", "/exit/generator-exit", 500, "SANDBOX_ERROR", "exception"),
    # Output floods: the API answers, its logs are capped.
    Attack("stderr-flood", "compute", "/flood/stderr", 200),
    Attack("one-16-mb-line", "compute", "/flood/one-line", 200),
]


def _corpus() -> str:
    """The corpus modules as one app module: each module's text, its `app = App()` made the
    first module's (their routes, paths and top-level names are distinct)."""
    modules = sorted({module for module, _ in HOSTILE.values()})
    texts = [(HERE / module).read_text() for module in modules]
    assert all(text.count("\napp = App()\n") == 1 for text in texts) and "from __future__" not in "".join(texts)
    return texts[0] + "".join("\n" + text.replace("\napp = App()\n", "\n") for text in texts[1:])


@pytest.fixture(scope="module")
def hostile_gateway(build_app, gateway_sources, tmp_path_factory, bundle_store):
    """A gateway serving the hostile APIs and a benign one, with a secret in its environment."""
    corpus = _corpus()
    build_app(corpus)  # into the session's store: the deploys find it built
    root = tmp_path_factory.mktemp("adversarial")
    data_dir = data_dir_sharing_store(root / "data", bundle_store)
    server = ServerProcess(
        data_dir, root / "server.log", HOSTILE_ENV_MARKER=MARKER, WASMGATE_WORKERS="2", WASMGATE_MAX_RESPONSE_MB="2"
    )
    server.start()
    apis = {}
    with httpx.Client(base_url=server.url, timeout=120) as client:
        for api, (_module, fields) in HOSTILE.items():
            response = client.post("/v1/apis", headers=ADMIN, **deploy_request(api, ("app.py", corpus), **fields))
            assert response.status_code == 201, response.text
            apis[api] = response.json()
        response = client.post("/v1/apis", headers=ADMIN, **deploy_request("benign", SOURCES["hello"]))
        assert response.status_code == 201, response.text
        apis["benign"] = response.json()
        yield server, client, apis
    server.stop()
    log = server.log_path.read_text(errors="replace")
    assert not [word for word in UNHANDLED if word in log], log[-5000:]


def _secrets(server: ServerProcess, apis: dict) -> list[str]:
    return [ADMIN_TOKEN, MARKER, str(server.data_dir.resolve()), str(ROOT), apis["benign"]["api_key"]]


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda attack: attack.id)
def test_attack(hostile_gateway, attack: Attack) -> None:
    server, client, apis = hostile_gateway
    api = apis[attack.api]
    request = dict(attack.request)
    headers = {"X-API-Key": api["api_key"], **request.pop("headers", {})}
    response = client.request(attack.method, api["endpoint"] + attack.path, headers=headers, **request)
    assert response.status_code == attack.status, response.text[:2000]
    if attack.code is not None:
        error = response.json()["error"]
        assert (error["code"], error["details"].get("reason")) == (attack.code, attack.reason)
    if attack.check is not None:
        attack.check(response)
    exposed = response.text + "".join(f"{k}: {v}\n" for k, v in response.headers.items())
    assert [secret for secret in _secrets(server, apis) if secret in exposed] == []
    benign = apis["benign"]
    after = client.get(benign["endpoint"] + "/hello/you", headers={"X-API-Key": benign["api_key"]})
    assert after.status_code == 200 and after.json() == {"message": "hello you"}


def test_concurrent_callers_see_only_their_own_request(hostile_gateway) -> None:
    server, client, apis = hostile_gateway
    api = apis["system"]

    def upload(n: int) -> dict:
        files = {"mine": (f"caller-{n}.txt", f"secret of caller {n}".encode())}
        response = client.post(api["endpoint"] + "/request-dir", headers={"X-API-Key": api["api_key"]}, files=files)
        assert response.status_code == 200, response.text
        return response.json()

    with ThreadPoolExecutor(8) as pool:
        seen = list(pool.map(upload, range(16)))
    for n, view in enumerate(seen):
        assert view["files"] == [f"caller-{n}.txt"] and len(view["entries"]) == 1



def test_the_corpus_covers_at_least_sixty_attacks() -> None:
    assert len({attack.id for attack in ATTACKS}) == len(ATTACKS) >= 60


def test_noisy_neighbours_cannot_take_every_worker(hostile_gateway) -> None:
    """Hostile APIs loop CPU, memory and sleep bombs from many callers at once; a benign API
    keeps answering every call, and callers past a hostile API's share get API_BUSY."""
    server, client, apis = hostile_gateway
    bombs = [("compute", "/cpu/python-loop"), ("compute", "/memory/list-growth"), ("waits", "/sleep/30")]
    stop = threading.Event()
    hostile_statuses: list[tuple[int, str]] = []

    def hammer(api: str, path: str) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as own:
            while not stop.is_set():
                response = own.get(apis[api]["endpoint"] + path, headers={"X-API-Key": apis[api]["api_key"]})
                hostile_statuses.append((response.status_code, response.json()["error"]["code"]))

    # Six callers of the 1-second sleep: behind two of them a third waits past the 1 s queue
    # timeout for its API's one slot per process, so API_BUSY comes within a few seconds.
    threads = [threading.Thread(target=hammer, args=bomb) for bomb in bombs * 3 + [bombs[2]] * 3]
    for thread in threads:
        thread.start()
    try:
        benign = apis["benign"]
        statuses: list[int] = []
        deadline = time.monotonic() + 60  # a bound for a hang only
        while len(statuses) < 40 or (
            not any(code == "API_BUSY" for _status, code in hostile_statuses) and time.monotonic() < deadline
        ):
            statuses.append(
                client.get(benign["endpoint"] + f"/hello/n{len(statuses)}", headers={"X-API-Key": benign["api_key"]})
                .status_code
            )
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert statuses == [200] * len(statuses)
    codes = {code for _status, code in hostile_statuses}
    # Past its share a hostile API's calls wait for its own slots (then API_BUSY); two hostile
    # APIs may still fill both workers of a process between them, and then a call is shed as
    # OVERLOADED once the queue timeout passes. The benign calls above were never shed.
    assert "API_BUSY" in codes, codes
    assert codes <= {"API_BUSY", "OVERLOADED", "SANDBOX_FUEL_EXHAUSTED", "SANDBOX_MEMORY_LIMIT", "SANDBOX_TIMEOUT"}
