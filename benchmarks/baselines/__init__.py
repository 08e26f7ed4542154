"""The designs wasmgate is measured against, each behind the same kind of FastAPI gateway.

Every gateway here serves `POST /run/{api}/echo` (a JSON echo) and `POST /run/{api}/upload`
(a multipart file; answers its size and sha256) and checks an `X-API-Key`, like wasmgate's
data plane, so one wrk script drives them all (benchmarks/compare.py).
"""
