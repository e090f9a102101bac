"""What callbacks (contract §2.5) and webhooks (§3.7) share: the loop that claims due messages and
sends them concurrently, one signed POST whose every failure becomes an `Outcome`, and the retry
schedule.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Generic, TypeVar

import httpx

from onderwijsregio.clock import utc_now
from onderwijsregio.engine.signing import SigningKeys, signature_headers
from onderwijsregio.engine.wakeup import Waker
from onderwijsregio.outbound import client
from onderwijsregio.outbound.urls import Resolver, UrlNotAllowed, UrlPolicy

log = logging.getLogger(__name__)
Key = TypeVar("Key")

# After the first attempt: about 10 s, 1 min, 5 min, 30 min, 2 h, 6 h, 12 h, 24 h; then failed.
RETRY_SCHEDULE = (10, 60, 300, 1800, 7200, 21600, 43200, 86400)
MAX_RETRY_AFTER = 86400


@dataclass
class Outcome:
    status_code: int | None
    error: str | None
    retry_after: float | None = None
    excerpt: bytes = b""

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def final_failure(self) -> bool:
        return self.status_code == 410  # the receiver says: never again


def next_attempt(
    attempts: int, outcome: Outcome, now: datetime, jitter: Callable[[], float]
) -> datetime | None:
    """When to try again after `attempts` attempts, or None when the delivery has failed for good."""
    if outcome.final_failure or attempts > len(RETRY_SCHEDULE):
        return None
    delay = RETRY_SCHEDULE[attempts - 1] * jitter()
    if outcome.retry_after is not None:
        delay = max(delay, min(outcome.retry_after, MAX_RETRY_AFTER))
    return now + timedelta(seconds=delay)


def retry_jitter() -> float:
    return random.uniform(0.8, 1.2)  # noqa: S311 - spreading retries, not a secret


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds or as an HTTP date."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        seconds: float = (parsedate_to_datetime(value) - utc_now()).total_seconds()
        return max(0.0, seconds)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Signed:
    """One signed POST: `message_id` is the `webhook-id`, the same on every attempt."""

    url: str
    body: bytes
    keys: SigningKeys
    message_id: str
    user_agent: str


async def post_signed(message: Signed, policy: UrlPolicy, resolver: Resolver | None = None) -> Outcome:
    """Sends `message` once; a refused URL, a time-out or a broken connection is an outcome too."""
    headers = {
        "content-type": "application/json",
        "user-agent": message.user_agent,
        **signature_headers(
            message.keys,
            message_id=message.message_id,
            timestamp=int(time.time()),
            nonce=secrets.token_hex(16),
            path_and_query=httpx.URL(message.url).raw_path.decode("ascii"),  # as the request line has it
            body=message.body,
        ),
    }
    try:
        answer = await client.post(message.url, message.body, headers, policy=policy, resolver=resolver)
    except UrlNotAllowed:
        return Outcome(None, "url_not_allowed")
    except TimeoutError:
        return Outcome(None, "timeout")
    except Exception as error:  # connection refused, TLS, protocol errors
        return Outcome(None, type(error).__name__)
    retry_after = (
        retry_after_seconds(answer.headers.get("retry-after")) if answer.status_code in (429, 503) else None
    )
    problem = None if 200 <= answer.status_code < 300 else f"HTTP {answer.status_code}"
    return Outcome(answer.status_code, problem, retry_after, answer.excerpt)


@dataclass
class DispatchLoop(Generic[Key]):
    """Claims due messages and delivers each in its own task, at most `concurrency` at a time.

    When a claim brings fewer than `full_claim` messages, the loop waits for its waker (or
    `poll_seconds`) before claiming again; a full claim suggests more are due at once.
    """

    what: str  # for the log: "callback", "webhook"
    claim: Callable[[], Awaitable[Sequence[Key]]]
    deliver: Callable[[Key], Awaitable[None]]
    waker: Waker
    concurrency: int
    full_claim: int
    poll_seconds: float = 1.0

    async def run_forever(self) -> None:
        slots = asyncio.Semaphore(self.concurrency)
        running: set[asyncio.Task[None]] = set()  # held, so no task is collected while it runs
        while True:
            try:
                claimed = await self.claim()
            except Exception as error:
                log.warning("%s claim failed: %s", self.what, type(error).__name__)
                claimed = []
            for key in claimed:
                await slots.acquire()
                task = asyncio.create_task(self._deliver_then_release(key, slots))
                running.add(task)
                task.add_done_callback(running.discard)
            if len(claimed) < self.full_claim:
                await self.waker.wait(self.poll_seconds)

    async def _deliver_then_release(self, key: Key, slots: asyncio.Semaphore) -> None:
        try:
            await self.deliver(key)
        except Exception as error:
            log.warning("%s delivery failed: %s", self.what, type(error).__name__)
        finally:
            slots.release()
