"""Per-client token buckets for the calls that cost the server something (sessions, offers,
uploads). Over the limit: ``429 rate_limited`` with ``Retry-After``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from swaprtc.http.client_address import client_address
from swaprtc.http.errors import json_error, never

MAX_CLIENTS = 10_000  # buckets kept per limiter; full (idle) buckets are dropped first


@dataclass
class Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """``per_minute`` calls per client on average, bursts of up to ``burst``; 0 = unlimited."""

    def __init__(self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(max(1, burst))
        self.clock = clock
        self.buckets: dict[str, Bucket] = {}

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def acquire(self, client: str) -> float:
        """Take one token for ``client``: 0.0 when allowed, else seconds until one is available."""
        if not self.enabled:
            return 0.0
        now = self.clock()
        bucket = self.buckets.get(client)
        if bucket is None:
            if len(self.buckets) >= MAX_CLIENTS:
                self._prune(now)
            bucket = self.buckets[client] = Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def _prune(self, now: float) -> None:
        full = [c for c, b in self.buckets.items() if b.tokens + (now - b.updated) * self.rate >= self.burst]
        for client in full:
            del self.buckets[client]
        if len(self.buckets) >= MAX_CLIENTS:  # every client is busy: forget the oldest half
            oldest = sorted(self.buckets, key=lambda c: self.buckets[c].updated)
            for client in oldest[: len(oldest) // 2]:
                del self.buckets[client]


Route = tuple[str, str]  # (method, path)


def rate_limit_middleware(
    limits: Mapping[Route, RateLimiter],
    trusted_proxies: Iterable[str] = (),
    exempt: Callable[[web.Request], bool] = never,
) -> Any:
    """Apply ``limits[(method, path)]`` per client address; other routes (and ``exempt``
    requests) pass untouched."""
    proxies = tuple(trusted_proxies)
    active = {route: limiter for route, limiter in limits.items() if limiter.enabled}

    @web.middleware
    async def rate_limit(request: web.Request, handler: Any) -> web.StreamResponse:
        limiter = active.get((request.method, request.path))
        if limiter is not None and not exempt(request):
            wait_s = limiter.acquire(client_address(request, proxies))
            if wait_s > 0:
                return json_error(
                    429,
                    "rate_limited",
                    f"too many {request.method} {request.path} calls from your address; "
                    f"try again in {wait_s:.0f} s",
                    retry_after_s=wait_s,
                )
        return await handler(request)

    return rate_limit
