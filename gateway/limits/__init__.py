"""Limits on calls: rate limits (in process, in Redis, shared through SQLite by worker
processes), per-key quotas, and the bounded pool that runs sandbox calls and sheds excess.

The bottom of the gateway: imports nothing else of it.
"""
