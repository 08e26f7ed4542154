"""When a gateway process says it is ready (`GET /readyz`): the start-up work it waits for.

Deployed APIs are loaded before a process answers anything: the app's lifespan (which uvicorn
completes before it serves) runs `Services.start`, which publishes each API's active version,
and publishing loads its bundle (files checked against the manifest, the component compiled
once per store and engine, or its precompiled file checked and mapped). A bundle found
damaged is published as unavailable: its calls answer a typed error.

What a start asks for beyond that runs after start, in a background task of one worker
process (the leader): `serve --example` deploys the example API so, and `serve --apis-dir`
(and `wasmgate dev`) the folder's APIs before following the folder. A task marked
`holds_readiness` keeps every process unready until it is done:

- it returns the ids of the APIs it made live; the leader records them (in
  `<data dir>/workers/started.json` when there are several processes);
- each process is ready once that record exists and its own registry serves each of those
  APIs (a deploy reaches the other workers through gateway.state.worker_sync).

A holding task that fails keeps the gateway unready, saying why. Other tasks hold nothing.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterable

from gateway.state.registry import Registry

log = logging.getLogger("wasmgate.gateway")

RECORD = "started.json"
Task = Callable[[Any], Iterable[str] | None]


def holds_readiness(task: Task) -> Task:
    """Mark an after-start task whose APIs must be served before the gateway is ready."""
    task.holds_readiness = True  # type: ignore[attr-defined]
    return task


class StartGate:
    def __init__(self, task: Task | None, record: Path | None) -> None:
        """The gate of `task` (None: no task); `record` is where the leader writes what a holding
        task made live, for the other worker processes (None: one process)."""
        self.holds = getattr(task, "holds_readiness", False)
        self._record = record
        self._outcome: dict[str, Any] | None = None  # {"apis": [...]} or {"failed": "why"}

    def run(self, task: Task, svc: Any) -> None:
        """Run the after-start task (in this thread) and, if it holds readiness, record its outcome."""
        try:
            outcome = {"apis": list(task(svc) or ())}
        except Exception as error:
            log.exception("the after-start task failed")
            outcome = {"failed": str(error) or type(error).__name__}
        if not self.holds:
            return
        if self._record is not None:
            partial = self._record.with_suffix(".tmp")
            partial.write_text(json.dumps(outcome))
            os.replace(partial, self._record)
        self._outcome = outcome

    def waiting(self, registry: Registry) -> dict[str, Any] | None:
        """Why this process is not ready yet (the NOT_READY answer's details), or None."""
        if not self.holds:
            return None
        if self._outcome is None and self._record is not None:
            try:
                self._outcome = json.loads(self._record.read_text())
            except FileNotFoundError:
                pass
        if self._outcome is None:
            return {"waiting_for": "the start-up deploy"}
        if "failed" in self._outcome:
            return {"start_up_failed": self._outcome["failed"]}
        missing = [api_id for api_id in self._outcome["apis"] if registry.get(api_id) is None]
        return {"waiting_for": missing} if missing else None
