"""Recording events (contract §3.7): in the transaction of the change they tell of, numbered on the
lane's event sequence, so a client resuming the feed from its last cursor never misses one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onderwijsregio.clock import utc_now
from onderwijsregio.engine.models import Mutation
from onderwijsregio.engine.operations import ApplyContext, on_cleanup, on_mutation_applied, on_sandbox_reset
from onderwijsregio.ids import new_id
from onderwijsregio.scope import scope_parameters, scoped, scoped_by_parameters
from onderwijsregio.storage.files import FileStore
from onderwijsregio.webhooks.models import Event, WebhookAttempt, WebhookEndpoint, WebhookMessage
from onderwijsregio.webhooks.service import event_body, new_message

RETENTION = timedelta(days=30)
# Operations whose mutations are told as mutation.succeeded / mutation.failed: every one but the
# sandbox reset, which removes the feed it would be told in.
UNTOLD = frozenset({"sandbox.reset"})


@on_mutation_applied
async def record_events(context: ApplyContext, mutation: Mutation, _payload: dict[str, Any]) -> None:
    """The mutation's events, and a message for every enabled endpoint subscribed to each."""
    told = list(context.events)
    if mutation.operation not in UNTOLD:
        told.append((f"mutation.{mutation.status}", {"mutationId": mutation.id}))
    endpoints = await _enabled_endpoints(context)
    for event_type, ids in told:
        event_id = new_id("evt")
        data = {**ids, "mutationId": mutation.id, "resourceIds": mutation.resource_ids or []}
        # The feed's rows are never read back in the batch as objects: buffered, written in one INSERT.
        context.rows.add(
            Event,
            {
                "region_id": context.scope.region_id,
                "sandbox": context.scope.sandbox,
                "seq": context.next_event(),
                "id": event_id,
                "type": event_type,
                "data": data,
                "created_at": context.now,
            },
        )
        for endpoint in endpoints:
            if event_type in endpoint.events:
                body = event_body(event_id, event_type, context.now, context.scope.sandbox, data)
                context.session.add(new_message(endpoint, body, context.now))
    if endpoints and told:
        context.deliveries_queued = True


async def _enabled_endpoints(context: ApplyContext) -> list[WebhookEndpoint]:
    """Read once per batch: endpoints change in API transactions, never inside a batch."""
    cached: list[WebhookEndpoint] | None = context.batch_cache.get("webhook_endpoints")
    if cached is None:
        found = await context.session.scalars(_ENABLED_ENDPOINTS, scope_parameters(context.scope))
        cached = context.batch_cache["webhook_endpoints"] = list(found)
    return cached


# Built once (see scope.scoped_by_parameters): every batch runs it.
_ENABLED_ENDPOINTS = scoped_by_parameters(select(WebhookEndpoint), WebhookEndpoint).where(
    WebhookEndpoint.enabled.is_(True)
)


@on_sandbox_reset
async def forget_sandbox_events(context: ApplyContext) -> None:
    """The sandbox's events and deliveries go; its endpoints (configuration) stay."""
    for model in (Event, WebhookMessage, WebhookAttempt):
        await context.session.execute(scoped(delete(model), model, context.scope))


@on_cleanup
async def forget_old_events(sessions: async_sessionmaker[AsyncSession], _files: FileStore) -> int:
    async with sessions() as session, session.begin():
        gone = await session.execute(
            delete(Event).where(Event.created_at < utc_now() - RETENTION).execution_options(cross_region=True)
        )
    return int(gone.rowcount or 0)  # type: ignore[attr-defined]
