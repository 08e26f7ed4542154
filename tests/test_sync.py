"""Staging a bundle on the other hosts before a switch (gateway.state.host_sync), against a real redis-server.

The hosts here are HostSync objects over a recording stand-in for Deployments, so that the
protocol (announce, stage, acknowledge, bounded wait) is tested apart from bundles; the
two-process test in test_multihost.py runs it with real gateways.
"""

from __future__ import annotations

import time
from typing import Iterator

import pytest
import redis

from gateway.state.host_sync import CHANNEL, HostSync
from redis_server import RedisServer


class RecordingDeployments:
    def __init__(self, fail: bool = False) -> None:
        self.staged: list[str] = []
        self.fail = fail
        self.on_change = self.on_stage = None

    def stage(self, bundle_hash: str) -> None:
        self.staged.append(bundle_hash)
        if self.fail:
            raise RuntimeError("the shared store is unreachable")

    def refresh(self, api_id: str) -> None:
        pass

    def refresh_all(self) -> None:
        pass


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def start_host(redis_server: RedisServer):
    started: list[HostSync] = []

    def start(deployments: RecordingDeployments, stage_timeout_s: float = 10.0) -> HostSync:
        host = HostSync(deployments, redis_server.url, interval_s=60, stage_timeout_s=stage_timeout_s)
        host.start()
        started.append(host)
        return host

    yield start
    for host in started:
        host.stop()


def wait_for_subscribers(server: RedisServer, count: int) -> None:
    client = redis.Redis.from_url(server.url)
    deadline = time.monotonic() + 5
    while client.pubsub_numsub(CHANNEL)[0][1] < count:
        assert time.monotonic() < deadline, "hosts did not subscribe"
        time.sleep(0.01)
    client.close()


def test_stage_returns_once_every_other_host_has_the_bundle(redis_server, start_host):
    a = start_host(RecordingDeployments())
    others = [RecordingDeployments(), RecordingDeployments()]
    hosts = [start_host(d) for d in others]
    wait_for_subscribers(redis_server, 3)
    progress: list[str] = []
    started = time.monotonic()
    a.stage("abc123", progress.append)
    assert time.monotonic() - started < 5
    assert [d.staged for d in others] == [["abc123"], ["abc123"]]
    assert a.deployments.staged == []  # a host does not stage its own announcement
    assert progress == ["waiting for 2 other host(s) to load bundle abc123"]
    assert [h.staged_total for h in hosts] == [1, 1] and a.stage_timeouts_total == 0


def test_a_host_that_never_answers_delays_the_switch_only_until_the_timeout(redis_server, start_host):
    a = start_host(RecordingDeployments(), stage_timeout_s=0.5)
    silent = redis.Redis.from_url(redis_server.url).pubsub()
    silent.subscribe(CHANNEL)
    try:
        wait_for_subscribers(redis_server, 2)
        started = time.monotonic()
        a.stage("abc123", lambda line: None)
        waited = time.monotonic() - started
    finally:
        silent.close()
    assert 0.5 <= waited < 3, waited
    assert a.stage_timeouts_total == 1


def test_a_host_whose_staging_fails_still_answers(redis_server, start_host):
    a = start_host(RecordingDeployments(), stage_timeout_s=30)
    broken = RecordingDeployments(fail=True)
    start_host(broken)
    wait_for_subscribers(redis_server, 2)
    started = time.monotonic()
    a.stage("abc123", lambda line: None)
    assert time.monotonic() - started < 5
    assert broken.staged == ["abc123"] and a.stage_timeouts_total == 0


def test_without_redis_there_is_nothing_to_wait_for():
    deployments = RecordingDeployments()
    host = HostSync(deployments, None, interval_s=60, stage_timeout_s=10)
    host.start()
    try:
        progress: list[str] = []
        host.stage("abc123", progress.append)
        assert progress == [] and host.stage_timeouts_total == 0
    finally:
        host.stop()
