"""Callback delivery (contract §2.5): the outbox rows, delivered apart from the ordered queue.

Deliveries are claimed in small groups with a lease and sent concurrently, each within 15 s, so a
slow or silent receiver holds up neither mutations nor other receivers. At least once: a delivery
whose worker died is claimed again when its lease runs out, with the same `webhook-id`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson
from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onderwijsregio.clock import utc_now
from onderwijsregio.engine.models import CallbackDelivery, Mutation
from onderwijsregio.engine.signing import SecretBox, signature_headers, signing_keys
from onderwijsregio.engine.views import mutation_view
from onderwijsregio.engine.wakeup import Waker
from onderwijsregio.metrics.registry import CALLBACK_FAILURES, note_delivery_failure
from onderwijsregio.outbound import client
from onderwijsregio.outbound.urls import Resolver, UrlNotAllowed, UrlPolicy
from onderwijsregio.scope import Scope, scoped

log = logging.getLogger(__name__)

# After the first attempt: about 10 s, 1 min, 5 min, 30 min, 2 h, 6 h, 12 h, 24 h; then failed.
RETRY_SCHEDULE = (10, 60, 300, 1800, 7200, 21600, 43200, 86400)
MAX_RETRY_AFTER = 86400
DELIVERY_LEASE = timedelta(seconds=60)
CLAIM_SIZE = 20


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


@dataclass
class CallbackDispatcher:
    sessions: async_sessionmaker[AsyncSession]
    write_sessions: async_sessionmaker[AsyncSession]
    waker: Waker
    box: SecretBox
    policy: UrlPolicy
    resolver: Resolver | None = None
    concurrency: int = 32
    poll_seconds: float = 1.0
    clock: Callable[[], datetime] = utc_now
    jitter: Callable[[], float] = retry_jitter
    _running: set[asyncio.Task[None]] = field(default_factory=set)

    async def run_forever(self) -> None:
        limit = asyncio.Semaphore(self.concurrency)
        while True:
            try:
                claimed = await self.claim()
            except Exception as error:
                log.warning("callback claim failed: %s", type(error).__name__)
                claimed = []
            for delivery_key in claimed:
                await limit.acquire()
                task = asyncio.create_task(self._deliver_then_release(delivery_key, limit))
                self._running.add(task)
                task.add_done_callback(self._running.discard)
            if len(claimed) < CLAIM_SIZE:
                await self.waker.wait(self.poll_seconds)

    async def _deliver_then_release(self, key: tuple[Scope, str], limit: asyncio.Semaphore) -> None:
        try:
            await self.deliver(*key)
        except Exception as error:
            log.warning("callback delivery failed: %s", type(error).__name__)
        finally:
            limit.release()

    async def claim(self) -> list[tuple[Scope, str]]:
        now = self.clock()
        async with self.write_sessions() as session, session.begin():
            due = await session.scalars(
                select(CallbackDelivery)
                .where(
                    CallbackDelivery.status == "pending",
                    CallbackDelivery.next_attempt_at <= now,
                    or_(CallbackDelivery.locked_until.is_(None), CallbackDelivery.locked_until < now),
                )
                .order_by(CallbackDelivery.next_attempt_at)
                .limit(CLAIM_SIZE)
                .with_for_update(skip_locked=True)
                .execution_options(cross_region=True)  # the outbox of every region
            )
            claimed = []
            for delivery in due:
                delivery.locked_until = now + DELIVERY_LEASE
                claimed.append((Scope(delivery.region_id, delivery.sandbox), delivery.id))
            return claimed

    async def deliver(self, scope: Scope, delivery_id: str) -> None:
        try:
            async with self.write_sessions() as session, session.begin():
                delivery = await session.scalar(
                    scoped(select(CallbackDelivery), CallbackDelivery, scope).where(
                        CallbackDelivery.id == delivery_id
                    )
                )
                if delivery is None or delivery.status != "pending":
                    return
                body, keys = await self._body_and_keys(session, scope, delivery)
            outcome = await self._send(delivery, body, keys)
        except Exception as error:  # counted as an attempt, so a broken delivery cannot loop forever
            log.warning("callback %s could not be sent: %s", delivery_id, type(error).__name__)
            outcome = Outcome(None, "internal_error")
        await self._record(scope, delivery_id, outcome)

    async def _body_and_keys(self, session: AsyncSession, scope: Scope, delivery: CallbackDelivery) -> Any:
        mutation = await session.scalar(
            scoped(select(Mutation), Mutation, scope).where(Mutation.id == delivery.mutation_id)
        )
        assert mutation is not None
        view = mutation_view(mutation, None)
        view["callback"] = {
            "status": "pending",
            "attempts": delivery.attempts,
            "lastStatusCode": None,
            "lastAttemptAt": None,
        }
        body = orjson.dumps({"type": "mutation.completed", "sandbox": scope.sandbox, "mutation": view})
        return body, await signing_keys(session, self.box, scope.region_id)

    async def _send(self, delivery: CallbackDelivery, body: bytes, keys: Any) -> Outcome:
        # Exactly the path and query the request line will carry.
        path_and_query = httpx.URL(delivery.url).raw_path.decode("ascii")
        headers = {
            "content-type": "application/json",
            "user-agent": "onderwijsregio-callbacks/2",
            **signature_headers(
                keys,
                message_id=delivery.id,
                timestamp=int(time.time()),
                nonce=secrets.token_hex(16),
                path_and_query=path_and_query,
                body=body,
            ),
        }
        try:
            answer = await client.post(
                delivery.url, body, headers, policy=self.policy, resolver=self.resolver
            )
        except UrlNotAllowed:
            return Outcome(None, "url_not_allowed")
        except TimeoutError:
            return Outcome(None, "timeout")
        except Exception as error:  # connection refused, TLS, protocol errors
            return Outcome(None, type(error).__name__)
        retry_after = (
            retry_after_seconds(answer.headers.get("retry-after"))
            if answer.status_code in (429, 503)
            else None
        )
        problem = None if 200 <= answer.status_code < 300 else f"HTTP {answer.status_code}"
        return Outcome(answer.status_code, problem, retry_after, answer.excerpt)

    async def _record(self, scope: Scope, delivery_id: str, outcome: Outcome) -> None:
        now = self.clock()
        async with self.write_sessions() as session, session.begin():
            delivery = await session.scalar(
                scoped(select(CallbackDelivery), CallbackDelivery, scope).where(
                    CallbackDelivery.id == delivery_id
                )
            )
            if delivery is None:
                return
            delivery.attempts += 1
            delivery.last_attempt_at, delivery.last_status_code = now, outcome.status_code
            delivery.last_error, delivery.locked_until = outcome.error, None
            delivery.response_excerpt = (
                outcome.excerpt[: client.EXCERPT_BYTES].decode(errors="replace") or None
            )
            if outcome.delivered:
                delivery.status, delivery.next_attempt_at = "delivered", None
                return
            delivery.next_attempt_at = next_attempt(delivery.attempts, outcome, now, self.jitter)
            if delivery.next_attempt_at is None:
                delivery.status = "failed"
            note_delivery_failure(CALLBACK_FAILURES, given_up=delivery.status == "failed")


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


async def forget_deliveries_of(session: AsyncSession, scope: Scope, mutation_ids: Any) -> None:
    """For the sandbox reset: the callback rows of the mutations it removes (a subquery of ids)."""
    await session.execute(
        scoped(delete(CallbackDelivery), CallbackDelivery, scope).where(
            CallbackDelivery.mutation_id.in_(mutation_ids)
        )
    )
