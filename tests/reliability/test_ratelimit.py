"""The API's rate limiter: token buckets per client address, not spoofable by a header."""
from __future__ import annotations

from services.image_handler.ratelimit import RateLimiter, client_address


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_bursts_then_the_average_rate():
    clock = Clock()
    limiter = RateLimiter(rate=2, burst=3, clock=clock)
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a") == 0.5          # empty: one token every half second
    assert limiter.acquire("b") == 0.0          # another client has its own bucket
    clock.now += 0.5
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") > 0
    clock.now += 60
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]  # refilled up to the burst, no more
    assert limiter.acquire("a") > 0


def test_buckets_are_bounded():
    limiter = RateLimiter(rate=1, burst=1, clock=Clock(), max_clients=100)
    for i in range(1000):
        limiter.acquire(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter._buckets) == 100


def test_client_address_ignores_forwarded_for_unless_proxies_are_trusted():
    spoofed = {"X-Forwarded-For": "1.2.3.4"}
    assert client_address("127.0.0.1", spoofed, 0) == "127.0.0.1"
    # Behind GKE's load balancer: "<what the client sent>, <client>, <load balancer>".
    assert client_address("10.0.0.9", {"X-Forwarded-For": "1.2.3.4, 203.0.113.7, 130.211.0.1"}, 2) == "203.0.113.7"
    assert client_address("10.0.0.9", {}, 2) == "10.0.0.9"
