"""Delivering events to webhook endpoints (contract §3.7): at least once, signed with the endpoint's
own secret in both schemes of §2.5, on the retry schedule of callbacks.

Messages are claimed with a lease, so one whose sender died is sent again (with the same
`webhook-id`, the event's id). At most four messages per endpoint are in flight in a process, so a
slow or dead endpoint holds up neither other endpoints nor (being apart from the queue) mutations.
An endpoint answering 410, or failing for three days, is disabled with the reason shown.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
import orjson
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onderwijsregio.engine.callbacks import Outcome, next_attempt, retry_after_seconds
from onderwijsregio.engine.signing import SecretBox, SigningKeys, signature_headers
from onderwijsregio.engine.wakeup import Waker
from onderwijsregio.ids import new_id
from onderwijsregio.metrics.registry import WEBHOOK_FAILURES, note_delivery_failure
from onderwijsregio.outbound import client
from onderwijsregio.outbound.urls import UrlNotAllowed, UrlPolicy
from onderwijsregio.scope import Scope, scoped
from onderwijsregio.webhooks.models import WebhookAttempt, WebhookEndpoint, WebhookMessage

log = logging.getLogger(__name__)
LEASE = timedelta(seconds=20)  # longer than one attempt may take (15 s), so only a dead sender loses it
CLAIM_SIZE = 50
PER_ENDPOINT = 4
FAILING_LIMIT = timedelta(days=3)


@dataclass
class WebhookDispatcher:
    write_sessions: async_sessionmaker[AsyncSession]
    waker: Waker
    box: SecretBox
    policy: UrlPolicy
    clock: Callable[[], datetime]
    jitter: Callable[[], float]
    concurrency: int = 32
    _in_flight: Counter[str] = field(default_factory=Counter)
    _running: set[asyncio.Task[None]] = field(default_factory=set)

    async def run_forever(self) -> None:
        slots = asyncio.Semaphore(self.concurrency)
        while True:
            try:
                claimed = await self.claim()
            except Exception as error:
                log.warning("webhook claim failed: %s", type(error).__name__)
                claimed = []
            for key in claimed:
                await slots.acquire()
                task = asyncio.create_task(self._deliver_then_release(key, slots))
                self._running.add(task)
                task.add_done_callback(self._running.discard)
            if not claimed:
                await self.waker.wait(1.0)

    async def _deliver_then_release(self, key: tuple[Scope, str, str], slots: asyncio.Semaphore) -> None:
        try:
            await self.deliver_claimed(key)
        finally:
            slots.release()

    async def deliver_claimed(self, key: tuple[Scope, str, str]) -> None:
        """Delivers a message `claim` returned, and frees its endpoint's place."""
        scope, message_id, endpoint_id = key
        try:
            await self.deliver(scope, message_id)
        except Exception as error:
            log.warning("webhook delivery failed: %s", type(error).__name__)
        finally:
            self._in_flight[endpoint_id] -= 1
            self.waker.notify()  # its endpoint has room again: claim its next message now

    async def claim(self) -> list[tuple[Scope, str, str]]:
        """Due messages, at most PER_ENDPOINT in flight per endpoint; each leased to this sender."""
        now = self.clock()
        busy = [endpoint for endpoint, count in self._in_flight.items() if count >= PER_ENDPOINT]
        async with self.write_sessions() as session, session.begin():
            due = await session.scalars(
                select(WebhookMessage)
                .where(
                    WebhookMessage.status == "pending",
                    WebhookMessage.next_attempt_at <= now,
                    or_(WebhookMessage.locked_until.is_(None), WebhookMessage.locked_until < now),
                    WebhookMessage.endpoint_id.not_in(busy),  # a busy endpoint never blocks the others
                )
                .order_by(WebhookMessage.next_attempt_at)
                .limit(CLAIM_SIZE)
                .with_for_update(skip_locked=True)
                .execution_options(cross_region=True)  # the outbox of every region
            )
            claimed = []
            for message in due:
                if self._in_flight[message.endpoint_id] >= PER_ENDPOINT:
                    continue  # that endpoint is busy: its other messages wait, nobody else's do
                self._in_flight[message.endpoint_id] += 1
                message.locked_until = now + LEASE
                claimed.append((Scope(message.region_id, message.sandbox), message.id, message.endpoint_id))
            return claimed

    async def deliver(self, scope: Scope, message_id: str) -> None:
        async with self.write_sessions() as session, session.begin():
            message = await _message(session, scope, message_id)
            endpoint = await _endpoint(session, scope, message.endpoint_id) if message else None
            if message is None or message.status != "pending":
                return
            if endpoint is None or not endpoint.enabled:
                message.status, message.locked_until = "failed", None  # unsubscribed meanwhile
                return
            url, keys = endpoint.url, self._keys(endpoint)
        started = time.monotonic()
        outcome = await self._send(url, keys, message)
        await self._record(scope, message_id, outcome, int((time.monotonic() - started) * 1000))

    def _keys(self, endpoint: WebhookEndpoint) -> SigningKeys:
        previous = None
        if (
            endpoint.previous_secret
            and endpoint.previous_secret_until
            and endpoint.previous_secret_until > self.clock()
        ):
            previous = self.box.open(endpoint.previous_secret)
        return SigningKeys(self.box.open(endpoint.secret), endpoint.created_at, previous)

    async def _send(self, url: str, keys: SigningKeys, message: WebhookMessage) -> Outcome:
        body = orjson.dumps(message.body)
        headers = {
            "content-type": "application/json",
            "user-agent": "onderwijsregio-webhooks/2",
            **signature_headers(
                keys,
                message_id=message.event_id,  # stable across attempts and redeliveries
                timestamp=int(time.time()),
                nonce=secrets.token_hex(16),
                path_and_query=httpx.URL(url).raw_path.decode("ascii"),
                body=body,
            ),
        }
        try:
            answer = await client.post(url, body, headers, policy=self.policy)
        except UrlNotAllowed:
            return Outcome(None, "url_not_allowed")
        except TimeoutError:
            return Outcome(None, "timeout")
        except Exception as error:  # connection refused, TLS, protocol errors
            return Outcome(None, type(error).__name__)
        wait = (
            retry_after_seconds(answer.headers.get("retry-after"))
            if answer.status_code in (429, 503)
            else None
        )
        problem = None if 200 <= answer.status_code < 300 else f"HTTP {answer.status_code}"
        return Outcome(answer.status_code, problem, wait)

    async def _record(self, scope: Scope, message_id: str, outcome: Outcome, duration_ms: int) -> None:
        now = self.clock()
        async with self.write_sessions() as session, session.begin():
            message = await _message(session, scope, message_id)
            if message is None:
                return
            endpoint = await _endpoint(session, scope, message.endpoint_id)
            message.attempts += 1
            message.locked_until = None
            session.add(_attempt(message, outcome, duration_ms, now))
            if outcome.delivered:
                message.status, message.next_attempt_at = "delivered", None
                if endpoint is not None:
                    endpoint.failing_since = None
                return
            message.next_attempt_at = next_attempt(message.attempts, outcome, now, self.jitter)
            if message.next_attempt_at is None:
                message.status = "failed"
            note_delivery_failure(WEBHOOK_FAILURES, given_up=message.status == "failed")
            if endpoint is not None:
                _note_failure(endpoint, outcome, now)


def _note_failure(endpoint: WebhookEndpoint, outcome: Outcome, now: datetime) -> None:
    endpoint.failing_since = endpoint.failing_since or now
    if outcome.final_failure:
        endpoint.enabled, endpoint.disabled_reason = False, "The endpoint answered 410 Gone"
    elif now - endpoint.failing_since >= FAILING_LIMIT:
        endpoint.enabled, endpoint.disabled_reason = False, "Every delivery failed for 3 days"


def _attempt(message: WebhookMessage, outcome: Outcome, duration_ms: int, now: datetime) -> WebhookAttempt:
    return WebhookAttempt(
        region_id=message.region_id,
        sandbox=message.sandbox,
        id=new_id("dlv"),
        endpoint_id=message.endpoint_id,
        message_id=message.id,
        event_id=message.event_id,
        event_type=message.event_type,
        status_code=outcome.status_code,
        duration_ms=duration_ms,
        error=(outcome.error or "")[:200] or None,
        attempted_at=now,
    )


async def _message(session: AsyncSession, scope: Scope, message_id: str) -> WebhookMessage | None:
    found: WebhookMessage | None = await session.scalar(
        scoped(select(WebhookMessage), WebhookMessage, scope).where(WebhookMessage.id == message_id)
    )
    return found


async def _endpoint(session: AsyncSession, scope: Scope, endpoint_id: str) -> WebhookEndpoint | None:
    found: WebhookEndpoint | None = await session.scalar(
        scoped(select(WebhookEndpoint), WebhookEndpoint, scope).where(WebhookEndpoint.id == endpoint_id)
    )
    return found
