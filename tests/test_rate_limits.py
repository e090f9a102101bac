"""Rate limits per key and per region, in memory and in Redis (contract §1.4)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import coredis
import httpx
import pytest
from limits import RateLimitItemPerSecond
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from onderwijsregio.app import create_app
from onderwijsregio.config import Settings
from onderwijsregio.errors import ServiceUnavailable
from onderwijsregio.ratelimit import (
    REDIS_TIMEOUT,
    Bucket,
    Decision,
    RateLimiter,
    RedisWindows,
    window_seconds,
)
from tests.conftest import API, Tenant
from tests.test_envelope import assert_error

REDIS_URL = os.environ.get("ONDERWIJSREGIO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TIGHT = {"requestsPerSecond": 1, "burst": 3, "keyRequestsPerSecond": 1, "keyBurst": 3}


async def test_every_keyed_answer_carries_rate_limit_headers(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    answers = [
        await client.get(f"{API}/regions/me", headers=tenant.headers()),
        await client.delete(f"{API}/api-keys/key_01ZZZZZZZZZZZZZZZZZZZZZZZZ", headers=tenant.headers()),
        await client.post(f"{API}/api-keys", json={}, headers=tenant.headers()),
    ]
    assert [a.status_code for a in answers] == [200, 404, 422]
    for answer in answers:
        assert (
            answer.headers["ratelimit-limit"] == "40"
        )  # the key bucket (40) is tighter than the region's (100)
        assert int(answer.headers["ratelimit-remaining"]) < 40
        assert int(answer.headers["ratelimit-reset"]) >= 0


async def test_key_bucket_refuses_past_its_burst(client: httpx.AsyncClient, make_tenant: Any) -> None:
    tenant: Tenant = await make_tenant(rateLimit={"keyRequestsPerSecond": 1, "keyBurst": 3})
    remaining = []
    for _ in range(3):
        response = await client.get(f"{API}/regions/me", headers=tenant.headers())
        assert response.status_code == 200
        remaining.append(int(response.headers["ratelimit-remaining"]))
    assert remaining == sorted(remaining, reverse=True)
    refused = await client.get(f"{API}/regions/me", headers=tenant.headers())
    assert_error(refused, 429, "rate_limited")
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["ratelimit-remaining"] == "0"


async def test_region_bucket_counts_all_its_keys(client: httpx.AsyncClient, make_tenant: Any) -> None:
    tenant: Tenant = await make_tenant(rateLimit={"requestsPerSecond": 1, "burst": 4})
    # The tenant fixture used none of the region's bucket (the admin created its key); a second key:
    second = await client.post(f"{API}/api-keys", json={"name": "second"}, headers=tenant.headers())
    other = {"x-api-key": second.json()["data"]["key"]}
    statuses = [
        (await client.get(f"{API}/regions/me", headers=headers)).status_code
        for headers in (tenant.headers(), other, tenant.headers(), other)
    ]
    assert statuses == [200, 200, 200, 429]  # the fifth request of the region, the key creation included


async def test_one_region_over_its_limit_leaves_others_alone(
    client: httpx.AsyncClient, make_tenant: Any
) -> None:
    busy: Tenant = await make_tenant(rateLimit=TIGHT)
    calm: Tenant = await make_tenant()
    for _ in range(4):
        await client.get(f"{API}/regions/me", headers=busy.headers())
    assert (await client.get(f"{API}/regions/me", headers=busy.headers())).status_code == 429
    assert (await client.get(f"{API}/regions/me", headers=calm.headers())).status_code == 200


async def test_redis_shares_the_limit_between_processes(
    settings: Settings, migrated: str, make_tenant: Any
) -> None:
    """Two app instances (as two server processes would be) count against one Redis bucket."""
    tenant: Tenant = await make_tenant(rateLimit=TIGHT)
    shared = settings.model_copy(update={"rate_limit_storage": REDIS_URL})
    first, second = create_app(shared, run_workers=False), create_app(shared, run_workers=False)
    statuses = []
    async with first.router.lifespan_context(first), second.router.lifespan_context(second):
        for index in range(4):
            app = first if index % 2 == 0 else second
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
                statuses.append((await http.get(f"{API}/regions/me", headers=tenant.headers())).status_code)
    assert statuses == [200, 200, 200, 429]


async def test_a_key_over_its_own_limit_leaves_its_region_alone(
    client: httpx.AsyncClient, make_tenant: Any
) -> None:
    tenant: Tenant = await make_tenant(
        rateLimit={"requestsPerSecond": 5, "burst": 10, "keyRequestsPerSecond": 1, "keyBurst": 2}
    )
    admin_made = await client.post(f"{API}/api-keys", json={"name": "other"}, headers=tenant.headers())
    other = {"x-api-key": admin_made.json()["data"]["key"]}
    statuses = [
        (await client.get(f"{API}/regions/me", headers=tenant.headers())).status_code for _ in range(10)
    ]
    assert statuses.count(429) == 9  # the key creation and one read used its burst of 2
    assert (await client.get(f"{API}/regions/me", headers=other)).status_code == 200


def _two_keys_of_one_region(tag: str) -> tuple[list[Bucket], list[Bucket]]:
    region = Bucket(f"region:{tag}", 5, 5)
    return [Bucket(f"key:{tag}-1", 3, 3), region], [Bucket(f"key:{tag}-2", 3, 3), region]


async def _decisions(limiter: RateLimiter, tag: str) -> list[Decision]:
    first, second = _two_keys_of_one_region(tag)
    return [await limiter.hit(buckets) for buckets in [first] * 4 + [second] * 3]


async def test_redis_and_memory_windows_decide_alike() -> None:
    """One Lua script in Redis decides every request exactly as `limits`' memory windows do."""
    tag = secrets.token_hex(6)
    in_memory = await _decisions(RateLimiter("memory://"), tag)
    in_redis = await _decisions(RateLimiter(REDIS_URL), tag)
    assert in_redis == in_memory
    # The key's fourth request is refused by its own bucket and not counted by the region's, so the
    # second key gets two more before the region (burst 5) refuses.
    assert [d.allowed for d in in_redis] == [True, True, True, False, True, True, False]
    assert [d.remaining for d in in_redis] == [2, 1, 0, 0, 1, 0, 0]
    assert [d.limit for d in in_redis] == [3, 3, 3, 3, 5, 5, 5]
    assert [d.retry_after_seconds for d in in_redis] == [0, 0, 0, 1, 0, 0, 1]


async def test_redis_windows_are_the_ones_limits_keeps() -> None:
    """Processes of a release that counted with `limits` and this one's script share each window."""
    tag = secrets.token_hex(6)
    bucket = Bucket(f"key:{tag}", 1, 3)
    item = RateLimitItemPerSecond(bucket.burst, window_seconds(bucket), namespace="oreg")
    older = MovingWindowRateLimiter(storage_from_string(f"async+{REDIS_URL}"))
    assert await older.hit(item, bucket.name) and await older.hit(item, bucket.name)
    windows = RedisWindows(REDIS_URL)
    try:
        [window] = await windows.hit([(item, bucket.name)])
        as_limits_sees_it = await older.get_window_stats(item, bucket.name)
        assert (window.allowed, window.remaining) == (True, as_limits_sees_it.remaining) == (True, 0)
        # The oldest of the three requests leaves the window first: `limits`' reset time, to the 0.1 ms
        # the script's number formatting keeps.
        assert abs(window.reset_at - as_limits_sees_it.reset_time) < 0.001
        [refused] = await windows.hit([(item, bucket.name)])
        assert (refused.allowed, refused.remaining) == (False, 0)
        assert not await older.hit(item, bucket.name)
    finally:
        await windows.aclose()


async def test_redis_counts_events_within_a_limit() -> None:
    limiter, name = RateLimiter(REDIS_URL), f"verify:{secrets.token_hex(6)}"
    try:
        assert [await limiter.within(name, 2, 60) for _ in range(3)] == [True, True, False]
        assert await limiter.healthy()
    finally:
        await limiter.aclose()


async def test_redis_counts_on_after_its_scripts_are_flushed() -> None:
    """A restarted Redis has forgotten the script; the next request is counted all the same.
    (SCRIPT FLUSH empties the script cache of the whole test Redis; this release's limiter sends its
    script whole, so that costs it nothing.)"""
    limiter, bucket = RateLimiter(REDIS_URL), Bucket(f"key:{secrets.token_hex(6)}", 5, 5)
    flusher = coredis.Redis.from_url(REDIS_URL)
    try:
        assert (await limiter.hit([bucket])).remaining == 4
        await flusher.script_flush()
        assert (await limiter.hit([bucket])).remaining == 3
    finally:
        flusher.connection_pool.disconnect()
        await limiter.aclose()


async def test_a_flushed_script_cache_fails_no_request_in_flight() -> None:
    """Requests in flight on the shared connection when Redis forgets its scripts (SCRIPT FLUSH, a
    restart behind a proxy, a fail-over) are all still counted and answered. A NOSCRIPT reply used to
    make the client drop its one connection, and with it every other request on it: a burst of 503s
    (a soak of 400,000 mutations met one when another test run flushed the shared Redis)."""
    limiter, flusher = RateLimiter(REDIS_URL), coredis.Redis.from_url(REDIS_URL)
    tag, stop = secrets.token_hex(6), time.monotonic() + 2.0
    region = Bucket(f"region:{tag}", 100_000, 100_000)
    answered = refused = 0

    async def keep_hitting(number: int) -> None:  # 32 of these keep requests in flight all along
        nonlocal answered, refused
        while time.monotonic() < stop:
            try:
                await limiter.hit([Bucket(f"key:{tag}-{number}", 100_000, 100_000), region])
                answered += 1
            except ServiceUnavailable:
                refused += 1

    async def keep_flushing() -> None:
        while time.monotonic() < stop:
            await asyncio.sleep(0.1)
            await flusher.script_flush()

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(keep_flushing())
            for number in range(32):
                group.create_task(keep_hitting(number))
    finally:
        flusher.connection_pool.disconnect()
        await limiter.aclose()
    assert answered > 1000, "too few requests were in flight to meet a flush"
    assert refused == 0, f"{refused} of {answered + refused} requests failed when the scripts were flushed"


class HoldingProxy:
    """A relay on 127.0.0.1 to the test Redis that can hold Redis's answers back, as a partition
    would, and later let them through (late, to a client that gave up on them)."""

    def __init__(self) -> None:
        self.holding = False
        self._resumed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    async def serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        url = urllib.parse.urlsplit(REDIS_URL)
        redis_reader, redis_writer = await asyncio.open_connection(url.hostname, url.port or 6379)
        relays = [
            asyncio.create_task(self._relay(client_reader, redis_writer, hold=False)),
            asyncio.create_task(self._relay(redis_reader, client_writer, hold=True)),
        ]
        self._tasks.update(relays)
        await asyncio.wait(relays, return_when=asyncio.FIRST_COMPLETED)
        for writer in (redis_writer, client_writer):
            writer.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hold: bool) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                while hold and self.holding:
                    await self._resumed.wait()
                writer.write(data)
                await writer.drain()

    def hold(self) -> None:
        self.holding = True
        self._resumed.clear()

    def resume(self) -> None:
        self.holding = False
        self._resumed.set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[int]:
        """Listens on 127.0.0.1 while the block runs; yields the port."""
        server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        try:
            yield server.sockets[0].getsockname()[1]
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            server.close()
            await server.wait_closed()


async def test_a_redis_that_stops_answering_costs_one_second_and_no_stale_answers() -> None:
    proxy = HoldingProxy()
    async with proxy.running() as port:
        limiter = RateLimiter(f"redis://127.0.0.1:{port}/0")
        bucket = Bucket(f"key:{secrets.token_hex(6)}", 1, 10)  # a window of 10 s outlasts the test
        try:
            assert (await limiter.hit([bucket])).remaining == 9
            proxy.hold()
            started = time.monotonic()
            with pytest.raises(ServiceUnavailable):
                await limiter.hit([bucket])
            assert time.monotonic() - started < 2.5 * REDIS_TIMEOUT  # one deadline, no retries
            proxy.resume()  # the held answer (remaining 8: Redis did count that request) arrives late
            # The next answer is this request's own, not the late one.
            assert (await limiter.hit([bucket])).remaining == 7
        finally:
            await limiter.aclose()


@pytest.mark.parametrize("redis", ["refusing", "silent"])
async def test_an_unreachable_redis_answers_503_not_unlimited(
    settings: Settings, migrated: str, make_tenant: Any, caplog: pytest.LogCaptureFixture, redis: str
) -> None:
    tenant: Tenant = await make_tenant()
    silent = HoldingProxy()  # holding from the start: Redis's answers never come, not even to HELLO
    silent.hold()
    async with contextlib.AsyncExitStack() as stack:
        port = 1 if redis == "refusing" else await stack.enter_async_context(silent.running())
        unreachable = settings.model_copy(update={"rate_limit_storage": f"redis://127.0.0.1:{port}/0"})
        app = create_app(unreachable, run_workers=False)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
        ):
            with caplog.at_level(logging.WARNING, logger="onderwijsregio.ratelimit"):
                started = time.monotonic()
                answer = await http.get(f"{API}/regions/me", headers=tenant.headers())
                waited = time.monotonic() - started
    assert_error(answer, 503, "service_unavailable")
    assert answer.headers["retry-after"] == "2"
    assert waited < 2.5 * REDIS_TIMEOUT  # one deadline ended the wait, with no retries
    assert any("rate limits unavailable" in r.getMessage() for r in caplog.records)
