"""Delivering events to webhook endpoints (contract §3.7): at least once, signed with the endpoint's
own secret in both schemes of §2.5, on the retry schedule of callbacks.

Messages are claimed with a lease, so one whose sender died is sent again (with the same
`webhook-id`, the event's id). At most four messages per endpoint are in flight in a process, so a
slow or dead endpoint holds up neither other endpoints nor (being apart from the queue) mutations.
An endpoint answering 410, or failing for three days, is disabled with the reason shown.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onderwijsregio.engine.outbox import DispatchLoop, Outcome, Signed, next_attempt, post_signed
from onderwijsregio.engine.signing import SecretBox, SigningKeys
from onderwijsregio.engine.wakeup import Waker
from onderwijsregio.ids import new_id
from onderwijsregio.metrics.registry import WEBHOOK_FAILURES, note_delivery_failure
from onderwijsregio.outbound.urls import UrlPolicy
from onderwijsregio.scope import Scope, scoped
from onderwijsregio.webhooks.models import WebhookAttempt, WebhookEndpoint, WebhookMessage

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

    async def run_forever(self) -> None:
        await DispatchLoop(
            "webhook", self.claim, self.deliver_claimed, self.waker, self.concurrency, full_claim=1
        ).run_forever()

    async def deliver_claimed(self, key: tuple[Scope, str, str]) -> None:
        """Delivers a message `claim` returned, and frees its endpoint's place."""
        scope, message_id, endpoint_id = key
        try:
            await self.deliver(scope, message_id)
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
        # The event's id is the `webhook-id`: the same on every attempt and redelivery.
        signed = Signed(url, orjson.dumps(message.body), keys, message.event_id, "onderwijsregio-webhooks/2")
        outcome = await post_signed(signed, self.policy)
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
