"""Queue figures for operators (contract §3.6 `/admin/queue`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from onderwijsregio.clock import utc_now
from onderwijsregio.db import UtcDateTime
from onderwijsregio.mutations.models import UNFINISHED, Mutation


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
