"""Request rate limiting for the public API: a token bucket per client address.

Each client may make ``rate`` requests per second on average and ``burst`` at once; past
that it is answered 429 with how long to wait. Buckets live in this process (one
image-handler replica), bounded in number, least recently seen dropped first. The client
address is the peer's, or with ``proxy_hops`` proxies in front (the GKE load balancer
appends two addresses) the one those proxies saw, so a client cannot pick its own bucket
by sending an X-Forwarded-For header.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable, Mapping


class RateLimiter:
    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = 10_000):
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate, self.burst = rate, burst
        self._clock = clock
        self._max = max_clients
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, last time)

    def acquire(self, key: str) -> float:
        """Take one token for ``key``: 0.0 when allowed, else the seconds until one is free."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
            return wait


def client_address(remote_addr: str | None, headers: Mapping[str, str], proxy_hops: int) -> str:
    """The address to limit: the peer, or the one ``proxy_hops`` trusted proxies recorded."""
    if proxy_hops > 0:
        hops = [part.strip() for part in (headers.get("X-Forwarded-For") or "").split(",") if part.strip()]
        if len(hops) >= proxy_hops:
            return hops[-proxy_hops]
    return remote_addr or "unknown"
