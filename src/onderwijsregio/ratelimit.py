"""Rate limits per API key and per region over all its keys (contract §1.4), with `limits`.

A token bucket of `rate` per second and `burst` is kept as a moving window of `burst` requests per
`burst / rate` seconds (rounded to whole seconds, at least one): it admits a burst of `burst` at
once and `rate` per second on average, and `limits` keeps it atomic in memory or in Redis, so the
limits hold across processes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItemPerSecond
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string


@dataclass(frozen=True, slots=True)
class Bucket:
    name: str  # e.g. "key:key_…" or "region:reg_…"
    rate: int
    burst: int


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int


def _item(bucket: Bucket) -> RateLimitItemPerSecond:
    window = max(1, round(bucket.burst / max(bucket.rate, 1)))
    return RateLimitItemPerSecond(bucket.burst, window, namespace="oreg")


def storage_uri(configured: str) -> str:
    """`redis://…` in the configuration means the asyncio Redis storage of `limits`."""
    if configured.startswith(("redis://", "rediss://")):
        return f"async+{configured}"
    if configured == "memory://":
        return "async+memory://"
    return configured


class RateLimiter:
    def __init__(self, configured_storage: str) -> None:
        self._limiter = MovingWindowRateLimiter(storage_from_string(storage_uri(configured_storage)))

    async def hit(self, buckets: list[Bucket]) -> Decision:
        """Counts one request against every bucket; the answer describes the tightest one."""
        decisions = []
        for bucket in buckets:
            item = _item(bucket)
            allowed = await self._limiter.hit(item, bucket.name)
            stats = await self._limiter.get_window_stats(item, bucket.name)
            reset = max(0, math.ceil(stats.reset_time - time.time()))
            decisions.append(Decision(allowed, bucket.burst, max(0, stats.remaining), reset))
            if not allowed:
                return Decision(False, bucket.burst, 0, max(1, reset))
        return min(decisions, key=lambda d: (d.remaining, -d.reset_seconds))

    async def healthy(self) -> bool:
        return bool(await self._limiter.storage.check())
