"""Callback delivery (contract §2.5): the outbox rows, delivered apart from the ordered queue.

Deliveries are claimed in small groups with a lease and sent concurrently, each within 15 s, so a
slow or silent receiver holds up neither mutations nor other receivers. At least once: a delivery
whose worker died is claimed again when its lease runs out, with the same `webhook-id`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onderwijsregio.clock import utc_now
from onderwijsregio.engine.models import CallbackDelivery, Mutation
from onderwijsregio.engine.outbox import (
    DispatchLoop,
    Outcome,
    Signed,
    next_attempt,
    post_signed,
    retry_jitter,
)
from onderwijsregio.engine.signing import SecretBox, SigningKeys, signing_keys
from onderwijsregio.engine.views import mutation_view
from onderwijsregio.engine.wakeup import Waker
from onderwijsregio.metrics.registry import CALLBACK_FAILURES, note_delivery_failure
from onderwijsregio.outbound import client
from onderwijsregio.outbound.urls import Resolver, UrlPolicy
from onderwijsregio.scope import Scope, scoped

log = logging.getLogger(__name__)

DELIVERY_LEASE = timedelta(seconds=60)
CLAIM_SIZE = 20


@dataclass
class CallbackDispatcher:
    write_sessions: async_sessionmaker[AsyncSession]
    waker: Waker
    box: SecretBox
    policy: UrlPolicy
    resolver: Resolver | None = None
    concurrency: int = 32
    poll_seconds: float = 1.0
    clock: Callable[[], datetime] = utc_now
    jitter: Callable[[], float] = retry_jitter

    async def run_forever(self) -> None:
        await DispatchLoop(
            "callback",
            self.claim,
            self._deliver_key,
            self.waker,
            self.concurrency,
            full_claim=CLAIM_SIZE,
            poll_seconds=self.poll_seconds,
        ).run_forever()

    async def _deliver_key(self, key: tuple[Scope, str]) -> None:
        await self.deliver(*key)

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
            signed = Signed(delivery.url, body, keys, delivery.id, "onderwijsregio-callbacks/2")
            outcome = await post_signed(signed, self.policy, self.resolver)
        except Exception as error:  # counted as an attempt, so a broken delivery cannot loop forever
            log.warning("callback %s could not be sent: %s", delivery_id, type(error).__name__)
            outcome = Outcome(None, "internal_error")
        await self._record(scope, delivery_id, outcome)

    async def _body_and_keys(
        self, session: AsyncSession, scope: Scope, delivery: CallbackDelivery
    ) -> tuple[bytes, SigningKeys]:
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


async def forget_deliveries_of(session: AsyncSession, scope: Scope, mutation_ids: Any) -> None:
    """For the sandbox reset: the callback rows of the mutations it removes (a subquery of ids)."""
    await session.execute(
        scoped(delete(CallbackDelivery), CallbackDelivery, scope).where(
            CallbackDelivery.mutation_id.in_(mutation_ids)
        )
    )
