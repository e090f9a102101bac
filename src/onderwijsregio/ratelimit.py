"""Rate limits per API key and per region over all its keys (contract §1.4), with `limits`.

`limits` has no token bucket, so a bucket of `rate` per second with `burst` is kept as a moving
window of `burst` requests per `burst / rate` seconds, rounded to whole seconds (at least one) as
`limits` counts in seconds: it admits `burst` at once and `burst / window` per second over time,
which is exactly `rate` whenever `burst` is a whole multiple of `rate` (the defaults are). `limits`
keeps the window atomic in memory or in Redis, so the limits hold across processes.
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
    reset_seconds: int  # until the bucket is full again
    retry_after_seconds: int  # until the next request is admitted (0 when this one was)


def window_seconds(bucket: Bucket) -> int:
    return max(1, round(bucket.burst / max(bucket.rate, 1)))


def _item(bucket: Bucket) -> RateLimitItemPerSecond:
    return RateLimitItemPerSecond(bucket.burst, window_seconds(bucket), namespace="oreg")


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
        """Counts one request against the buckets in order, stopping at the first that refuses it.

        The answer describes the refusing bucket, or else the one with the fewest requests left.
        Having just admitted a request, a bucket is full again one window later.
        """
        decisions = []
        for bucket in buckets:
            item = _item(bucket)
            allowed = await self._limiter.hit(item, bucket.name)
            stats = await self._limiter.get_window_stats(item, bucket.name)
            if not allowed:
                wait = max(1, math.ceil(stats.reset_time - time.time()))
                return Decision(False, bucket.burst, 0, window_seconds(bucket), wait)
            decisions.append(Decision(True, bucket.burst, max(0, stats.remaining), window_seconds(bucket), 0))
        return min(decisions, key=lambda d: d.remaining)

    async def within(self, name: str, amount: int, seconds: int) -> bool:
        """Counts one event against a limit of `amount` per `seconds` (a moving window); False when over."""
        return bool(await self._limiter.hit(RateLimitItemPerSecond(amount, seconds, namespace="oreg"), name))

    async def healthy(self) -> bool:
        return bool(await self._limiter.storage.check())
