"""A real headless Chromium (Debian's `chromium`) driven over the DevTools protocol on a pipe.

No WebDriver and no browser download: `--remote-debugging-pipe` takes the protocol's JSON
messages on fd 3 and answers on fd 4. `Browser.open(url)` loads a page; `page.evaluate(js)`
runs a script in it; every network request the page makes and every console or CSP message
is recorded (`page.requests`, `page.messages`). Chromium missing is a failure, not a skip:
CI installs it (`.ci/run`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from typing import Any

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio", "--remote-debugging-pipe",
]


class Browser:
    def __init__(self) -> None:
        executable = shutil.which("chromium")
        assert executable, "Chromium is required for the docs tests: apt-get install -y chromium"
        self.profile = tempfile.mkdtemp(prefix="wasmgate-chromium-")
        to_browser, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        command = " ".join([executable, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"])
        # The protocol's pipe must be the child's fds 3 (commands) and 4 (answers).
        self.process = subprocess.Popen(
            ["bash", "-c", f"exec {command} 3<&{to_browser} 4>&{from_browser_w}"],
            pass_fds=(to_browser, from_browser_w), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_browser)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30) -> dict:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = self._read()
            if answer.get("id") == self._next_id:
                assert "error" not in answer, answer
                return answer["result"]
            self.events.append(answer)
        raise TimeoutError(method)

    def _read(self) -> dict:
        while b"\0" not in self._buffer:
            chunk = os.read(self._from_browser, 1 << 16)
            assert chunk, "Chromium closed its pipe"
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def open(self, url: str) -> Page:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        for domain in ("Network", "Log", "Runtime", "Page"):
            self.send(f"{domain}.enable", session=session)
        self.send("Page.navigate", {"url": url}, session=session)
        return page

    def close(self) -> None:
        self.process.kill()
        self.process.wait(10)
        os.close(self._to_browser)
        os.close(self._from_browser)
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    def evaluate(self, expression: str) -> Any:
        result = self.browser.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session=self.session,
        )
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30) -> Any:
        """The value of `expression` once it is truthy."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {expression}; page: {self.evaluate('document.body.innerText')}")

    def _events(self, method: str) -> list[dict]:
        return [e["params"] for e in self.browser.events if e.get("sessionId") == self.session and e.get("method") == method]

    @property
    def requests(self) -> list[dict]:
        """Every request the page sent: its URL, method and headers."""
        return [event["request"] for event in self._events("Network.requestWillBeSent")]

    @property
    def messages(self) -> list[str]:
        """Console messages and browser log entries (CSP violations among them)."""
        logged = [event["entry"]["text"] for event in self._events("Log.entryAdded")]
        console = [" ".join(str(a.get("value", "")) for a in e["args"]) for e in self._events("Runtime.consoleAPICalled")]
        return logged + console
