"""Rate limits per API key and per region over all its keys (contract §1.4).

A bucket of `rate` per second with `burst` is kept as a moving window of `burst` requests per
`burst / rate` seconds, rounded to whole seconds (at least one), as `limits` counts: it admits `burst`
at once and `burst / window` per second over time, which is exactly `rate` whenever `burst` is a whole
multiple of `rate` (the defaults are). In memory the windows are `limits`' own. In Redis they are the
same lists under the same keys as `limits` keeps them, but one Lua script counts a request against
all its buckets: `limits` took a round trip to admit and another to read each window, four per
request, and each cost about 0.35 ms of this process's CPU in the client.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Protocol

import coredis
from coredis.retry import NoRetryPolicy
from limits import RateLimitItemPerSecond
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from onderwijsregio.errors import ServiceUnavailable

log = logging.getLogger(__name__)


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


@dataclass(frozen=True, slots=True)
class Window:
    """A moving window of `limit` requests per `seconds`, as a request left it."""

    allowed: bool
    remaining: int
    reset_at: float  # epoch seconds at which the window's oldest request leaves it


class Windows(Protocol):
    async def hit(self, items: list[tuple[RateLimitItemPerSecond, str]]) -> list[Window]:
        """Counts one request against each window in order, stopping after the first that refuses it."""

    async def healthy(self) -> bool: ...

    async def aclose(self) -> None: ...


def window_seconds(bucket: Bucket) -> int:
    return max(1, round(bucket.burst / max(bucket.rate, 1)))


def _item(bucket: Bucket) -> RateLimitItemPerSecond:
    return RateLimitItemPerSecond(bucket.burst, window_seconds(bucket), namespace="oreg")


def storage_uri(configured: str) -> str:
    """`memory://` in the configuration means the asyncio memory storage of `limits`."""
    return "async+memory://" if configured == "memory://" else configured


class LimitsWindows:
    """The windows in a storage of `limits`: in this process's memory (or any storage it knows)."""

    def __init__(self, uri: str) -> None:
        self._limiter = MovingWindowRateLimiter(storage_from_string(uri))

    async def hit(self, items: list[tuple[RateLimitItemPerSecond, str]]) -> list[Window]:
        windows = []
        for item, name in items:
            allowed = await self._limiter.hit(item, name)
            stats = await self._limiter.get_window_stats(item, name)
            windows.append(Window(allowed, stats.remaining, stats.reset_time))
            if not allowed:
                break
        return windows

    async def healthy(self) -> bool:
        return bool(await self._limiter.storage.check())

    async def aclose(self) -> None:
        return None  # memory needs no closing


# `limits`' acquire_moving_window.lua and moving_window.lua, for every window in one call. A window
# is a list of request times, newest first, at most `limit` long, expiring with its window.
_HIT_SCRIPT = """
local now = tonumber(ARGV[1])
local answers = {}
for i, key in ipairs(KEYS) do
    local limit = tonumber(ARGV[2 * i])
    local expiry = tonumber(ARGV[2 * i + 1])
    local since = now - expiry
    local last = redis.call('lindex', key, limit - 1)
    local allowed = not (last and tonumber(last) >= since)
    if allowed then
        redis.call('lpush', key, now)
        redis.call('ltrim', key, 0, limit - 1)
        redis.call('expire', key, expiry)
    end
    local low, high, count, oldest = 0, redis.call('llen', key) - 1, 0, now
    while low <= high do
        local middle = math.floor((low + high) / 2)
        local value = tonumber(redis.call('lindex', key, middle))
        if value and value >= since then
            count, oldest, low = middle + 1, value, middle + 1
        else
            high = middle - 1
        end
    end
    answers[i] = {allowed and 1 or 0, limit - count, tostring(oldest + expiry)}
    if not allowed then
        break
    end
end
return answers
"""
REDIS_TIMEOUT = 1.0  # seconds: the deadline of one request's round trip, connecting included
_KEY_PREFIX = "LIMITS"  # `limits`' own, so processes of an older release count in the same windows


class RedisWindows:
    """The windows in Redis, shared by every process; one round trip per request."""

    def __init__(self, url: str) -> None:
        # No retries: `from_url` would send a timed-out script twice more (counting the request up to
        # three times, as Redis may have run it) and make a silent Redis cost 5 s instead of 1.
        self._client = coredis.Redis.from_url(
            url,
            connect_timeout=REDIS_TIMEOUT,
            stream_timeout=REDIS_TIMEOUT,
            retry_policy=NoRetryPolicy(),
        )

    async def hit(self, items: list[tuple[RateLimitItemPerSecond, str]]) -> list[Window]:
        keys = tuple(f"{_KEY_PREFIX}:{item.key_for(name)}" for item, name in items)
        limits = (number for item, _ in items for number in (item.amount, item.get_expiry()))
        try:
            # One deadline over the connect and the script: without it, a Redis that stopped
            # answering (a partition drops packets, it refuses nothing) would hold every request for
            # as long as the client waits.
            async with asyncio.timeout(REDIS_TIMEOUT):
                # EVAL, not EVALSHA: Redis caches the compiled script by its SHA either way, but a
                # NOSCRIPT reply (after SCRIPT FLUSH, a restart behind a proxy, a fail-over) makes
                # coredis drop the one connection that every request in flight shares: a burst of 503s.
                answers = await self._client.eval(_HIT_SCRIPT, keys=keys, args=(time.time(), *limits))
        except (coredis.exceptions.RedisError, TimeoutError, OSError) as error:
            # Not counted means not admitted: a request is never let through unlimited.
            log.warning("rate limits unavailable: %s", _described(error))
            raise ServiceUnavailable(
                "Rate limits cannot be checked right now; try again shortly", headers={"retry-after": "2"}
            ) from error
        assert isinstance(answers, list)
        windows = [Window(bool(a[0]), int(a[1]), float(a[2])) for a in answers]
        stopped_at_refusal = bool(windows) and not windows[-1].allowed
        if len(windows) != len(items) and not stopped_at_refusal:
            raise RuntimeError("the rate-limit script answered for fewer buckets than it was given")
        return windows

    async def healthy(self) -> bool:
        async with asyncio.timeout(REDIS_TIMEOUT):
            return bool(await self._client.ping())

    async def aclose(self) -> None:
        self._client.connection_pool.disconnect()


def _described(error: BaseException) -> str:
    """The error's type, and what Redis itself said (`OOM …`, `NOAUTH …`): never keys or values."""
    if isinstance(error, coredis.exceptions.ResponseError):
        return f"{type(error).__name__}: {str(error)[:120]}"
    return type(error).__name__


def windows_in(configured_storage: str) -> Windows:
    if configured_storage.startswith(("redis://", "rediss://")):
        return RedisWindows(configured_storage)
    return LimitsWindows(storage_uri(configured_storage))


class RateLimiter:
    def __init__(self, configured_storage: str) -> None:
        self._windows = windows_in(configured_storage)

    async def hit(self, buckets: list[Bucket]) -> Decision:
        """Counts one request against the buckets in order, stopping at the first that refuses it.

        The answer describes the refusing bucket, or else the one with the fewest requests left.
        Having just admitted a request, a bucket is full again one window later.
        """
        windows = await self._windows.hit([(_item(bucket), bucket.name) for bucket in buckets])
        decisions = []
        for bucket, window in zip(buckets, windows, strict=False):
            if not window.allowed:
                wait = max(1, math.ceil(window.reset_at - time.time()))
                return Decision(False, bucket.burst, 0, window_seconds(bucket), wait)
            decisions.append(
                Decision(True, bucket.burst, max(0, window.remaining), window_seconds(bucket), 0)
            )
        return min(decisions, key=lambda d: d.remaining)

    async def within(self, name: str, amount: int, seconds: int) -> bool:
        """Counts one event against a limit of `amount` per `seconds` (a moving window); False when over."""
        item = RateLimitItemPerSecond(amount, seconds, namespace="oreg")
        (window,) = await self._windows.hit([(item, name)])
        return window.allowed

    async def healthy(self) -> bool:
        return await self._windows.healthy()

    async def aclose(self) -> None:
        await self._windows.aclose()
