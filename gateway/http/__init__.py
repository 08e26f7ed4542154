"""The HTTP service: the FastAPI app, the control plane (`/v1/...`), the data plane
(`/run/{id}/...`), async job routes, request bodies and multipart, OpenAPI pages, and serving
the app in N worker processes.

The top of the gateway: may import every other part of it (`services`, `jobs`, `state`,
`limits`, `settings`, `errors`, `responses`); nothing in the gateway imports it.
"""
