"""Reading and canceling mutations (contract §2.3), and the operators' queue figures (§3.6)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from onderwijsregio.clock import utc_now
from onderwijsregio.cursors import CursorCodec
from onderwijsregio.db import UtcDateTime
from onderwijsregio.engine.models import UNFINISHED, CallbackDelivery, Mutation
from onderwijsregio.engine.views import mutation_view
from onderwijsregio.errors import Conflict, NotFound
from onderwijsregio.ids import has_shape
from onderwijsregio.mutations.schemas import MutationFilters
from onderwijsregio.pagination import PageRequest, page_by_id
from onderwijsregio.scope import Scope, scoped


async def queue_overview(session: AsyncSession) -> list[dict[str, Any]]:
    """Per region and mode: queued, processing, failed in 24 h, oldest queued age, applied per minute."""
    now = utc_now()
    day_ago, minute_ago = now - timedelta(hours=24), now - timedelta(minutes=1)
    rows = await session.execute(
        select(
            Mutation.region_id,
            Mutation.sandbox,
            func.count().filter(Mutation.status == "queued"),
            func.count().filter(Mutation.status == "processing"),
            func.count().filter(and_(Mutation.status == "failed", Mutation.completed_at >= day_ago)),
            func.min(case((Mutation.status == "queued", Mutation.created_at)), type_=UtcDateTime()),
            func.count().filter(
                and_(Mutation.status.in_(("succeeded", "failed")), Mutation.completed_at >= minute_ago)
            ),
        )
        .where(or_(Mutation.status.in_(UNFINISHED), Mutation.completed_at >= day_ago))
        .group_by(Mutation.region_id, Mutation.sandbox)
        .order_by(Mutation.region_id, Mutation.sandbox)
        .execution_options(cross_region=True)  # an operator's view over every region, by design
    )
    return [
        {
            "regionId": region_id,
            "sandbox": sandbox,
            "queued": queued,
            "processing": processing,
            "failedLast24h": failed,
            "oldestQueuedAgeSeconds": _age(now, oldest),
            "appliedLastMinute": applied,
        }
        for region_id, sandbox, queued, processing, failed, oldest, applied in rows
    ]


def _age(now: datetime, oldest: datetime | None) -> float | None:
    return None if oldest is None else round((now - oldest).total_seconds(), 3)


async def get_mutation(session: AsyncSession, scope: Scope, mutation_id: str) -> dict[str, Any]:
    mutation = await _find(session, scope, mutation_id)
    return mutation_view(mutation, await _delivery(session, scope, mutation.id))


async def list_mutations(
    session: AsyncSession, scope: Scope, filters: MutationFilters, page: PageRequest, cursors: CursorCodec
) -> tuple[list[dict[str, Any]], str | None]:
    statement = scoped(select(Mutation), Mutation, scope)
    if filters.status is not None:
        statement = statement.where(Mutation.status == filters.status)
    if filters.operation is not None:
        statement = statement.where(Mutation.operation == filters.operation)
    listing = f"mutations:{scope.region_id}:{scope.sandbox}:{filters.status}:{filters.operation}"
    result = await page_by_id(session, statement, Mutation.id, page, cursors, listing)
    deliveries = await _deliveries(session, scope, [m.id for m in result.items])
    return [mutation_view(m, deliveries.get(m.id)) for m in result.items], result.cursor


async def cancel(session: AsyncSession, scope: Scope, mutation_id: str) -> dict[str, Any]:
    """A queued mutation becomes canceled; one a worker has started cannot be (409)."""
    mutation = await _find(session, scope, mutation_id)
    changed = await session.execute(
        scoped(update(Mutation), Mutation, scope)
        .where(Mutation.id == mutation.id, Mutation.status == "queued")
        .values(status="canceled", completed_at=utc_now(), payload=None)
    )
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(f"The mutation is {mutation.status} and can no longer be canceled")
    return await get_mutation(session, scope, mutation_id)


async def _find(session: AsyncSession, scope: Scope, mutation_id: str) -> Mutation:
    mutation: Mutation | None = None
    if has_shape(mutation_id, "mut"):
        mutation = await session.scalar(
            scoped(select(Mutation), Mutation, scope)
            .where(Mutation.id == mutation_id)
            .execution_options(populate_existing=True)  # fresh, also right after a change in this session
        )
    if mutation is None:
        raise NotFound("Mutation not found")
    return mutation


async def _delivery(session: AsyncSession, scope: Scope, mutation_id: str) -> CallbackDelivery | None:
    return (await _deliveries(session, scope, [mutation_id])).get(mutation_id)


async def _deliveries(
    session: AsyncSession, scope: Scope, mutation_ids: list[str]
) -> dict[str, CallbackDelivery]:
    if not mutation_ids:
        return {}
    rows = await session.scalars(
        scoped(select(CallbackDelivery), CallbackDelivery, scope).where(
            CallbackDelivery.mutation_id.in_(mutation_ids)
        )
    )
    return {delivery.mutation_id: delivery for delivery in rows}
