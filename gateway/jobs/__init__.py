"""Async jobs (`Prefer: respond-async`): the queue contract and job records, the Redis and
SQLite queues, opening the configured one, and the worker that runs jobs in the runtime.

May import `state`, `limits`, `settings`, `errors` and `responses`; never `http` or `services`.
"""
