"""Gateway pieces that need no server: rate limiting arithmetic, API key format."""

from __future__ import annotations

from gateway import auth
from gateway.ratelimit import InProcessRateLimiter, RateLimit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_gcra_allows_a_burst_then_refills_one_request_per_interval():
    clock = Clock()
    limiter = InProcessRateLimiter(clock)
    limit = RateLimit(requests=3, per_seconds=30)  # one request back every 10 s
    decisions = [limiter.hit("k", limit) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert decisions[3].retry_after_s == 10 and decisions[3].headers()["Retry-After"] == "10"
    assert decisions[2].headers() == {"RateLimit-Limit": "3", "RateLimit-Remaining": "0", "RateLimit-Reset": "30"}
    clock.now += 10
    assert limiter.hit("k", limit).allowed and not limiter.hit("k", limit).allowed
    assert limiter.hit("other key", limit).allowed
    clock.now += 1000  # idle buckets are forgotten, and start full again
    assert limiter.hit("k", limit).remaining == 2


def test_api_keys_name_their_id_and_are_kept_as_a_digest():
    new = auth.new_api_key()
    assert new.key.startswith(new.prefix + "_") and auth.key_id_of(new.key) == new.id
    assert auth.matches(new.digest, new.key) and not auth.matches(new.digest, new.key + "x")
    assert new.key not in new.digest
    for malformed in ("", "wg_", "wg__x", "xx_abc_def", "wg_abc"):
        assert auth.key_id_of(malformed) is None
