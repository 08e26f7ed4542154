"""The HTTP gateway: authenticates each call, applies limits, and runs it in the runtime.

Subpackages by concern, importing one way (each only from those listed below it):

- `gateway.http`: the FastAPI service (app, control plane, data plane, request bodies,
  OpenAPI pages, serving in N processes);
- `gateway.services`: the long-lived parts of one gateway process, wired together;
- `gateway.jobs`: async jobs (the queue contract, its Redis and SQLite stores, the worker);
- `gateway.state`: metadata (database, migrations), deployments, the in-memory registry and
  keys, the call log, and keeping hosts and worker processes in step;
- `gateway.settings`, `gateway.errors`, `gateway.responses`: configuration, the error body and
  what a guest's answer becomes over HTTP, shared by every layer above `limits`;
- `gateway.limits`: rate limits, quotas and the bounded pool of sandbox calls (imports
  nothing else of the gateway).

The gateway imports `runtime` and `builder`, never the reverse; the command line (`cli`)
sits on top of it.
"""
