"""Cost of a rate-limit decision through Redis, against the in-process limiter in the same run.

    .venv/bin/python benchmarks/bench_ratelimit.py [-n 20000] [--concurrency 1 8 32]

Starts its own redis-server (tests/redis_server.py) on a free port. Prints decisions/second and
per-decision latency (p50, p99) for: the in-process limiter (sync, and its async facade),
a bare Redis PING round trip (the floor), and RedisRateLimiter sequentially and with N
concurrent tasks; then the ratios and the latency a Redis decision adds over an in-process one.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from gateway.limits.ratelimit import InProcessRateLimiter, RateLimit  # noqa: E402
from gateway.limits.ratelimit_redis import AsyncInProcessRateLimiter, RedisRateLimiter  # noqa: E402
from redis_server import RedisServer  # noqa: E402

LIMIT = RateLimit(1_000_000, 1)  # roomy: every decision is allowed and writes its key
BUCKETS = 1000


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def report(label: str, n: int, elapsed: float, latencies: list[float]) -> float:
    print(f"{label:<34} {n / elapsed:>10,.0f} decisions/s | latency p50 {pct(latencies, .5) * 1e6:8.1f} µs"
          f" p99 {pct(latencies, .99) * 1e6:8.1f} µs")
    return n / elapsed


def in_process(n: int) -> tuple[float, float]:
    limiter = InProcessRateLimiter()
    latencies = []
    start = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        limiter.hit(f"b{i % BUCKETS}", LIMIT)
        latencies.append(time.perf_counter() - t0)
    return report("in process (sync)", n, time.perf_counter() - start, latencies), pct(latencies, .5)


async def run(label: str, n: int, concurrency: int, call: Callable[[int], Awaitable[object]]) -> tuple[float, float]:
    latencies: list[float] = []

    async def task(first: int) -> None:
        for i in range(first, n, concurrency):
            t0 = time.perf_counter()
            await call(i)
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(task(k) for k in range(concurrency)))
    return report(label, n, time.perf_counter() - start, latencies), pct(latencies, .5)


async def bench(url: str, n: int, concurrencies: list[int]) -> None:
    local_rate, local_p50 = in_process(n)
    facade = AsyncInProcessRateLimiter()
    await run("in process (async facade)", n, 1, lambda i: facade.hit(f"b{i % BUCKETS}", LIMIT))

    limiter = RedisRateLimiter.from_url(url, timeout_s=1.0)
    await limiter.hit("warm", LIMIT)  # connect and load the script
    _, ping_p50 = await run("Redis PING (round-trip floor)", n, 1, lambda i: limiter.client.ping())
    rates = {}
    for concurrency in concurrencies:
        rates[concurrency], p50 = await run(
            f"Redis limiter, {concurrency} task(s)", n, concurrency, lambda i: limiter.hit(f"b{i % BUCKETS}", LIMIT)
        )
        if concurrency == 1:
            redis_p50 = p50
    assert limiter.errors_total == 0, "Redis errors during the benchmark"
    await limiter.aclose()

    print()
    for concurrency, rate in rates.items():
        print(f"in process / Redis throughput, {concurrency:>2} task(s): {local_rate / rate:8.1f}x")
    if 1 in rates:
        print(f"added latency per decision (sequential p50): {(redis_p50 - local_p50) * 1e6:.1f} µs "
              f"(of which the bare round trip: {ping_p50 * 1e6:.1f} µs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=20_000, help="decisions per measurement")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()
    with RedisServer() as server:
        print(f"redis-server on {server.url}, {args.n} decisions per row, {BUCKETS} buckets\n")
        asyncio.run(bench(server.url, args.n, args.concurrency))


if __name__ == "__main__":
    main()
