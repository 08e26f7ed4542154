"""The `wasmgate` command line: `build` and `invoke-local` (builder and runtime only, no
gateway), `serve` and `worker` (run the gateway), and the commands that talk to a running
gateway over HTTP (`deploy`, `apis`, `logs`, `keys`).

The top of the project: imports `gateway`, `builder` and `runtime`; nothing imports it.
"""
