"""Regions: create, read, change, list. Plain functions on the caller's session."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from onderwijsregio.clock import to_rfc3339, utc_now
from onderwijsregio.cursors import CursorCodec
from onderwijsregio.errors import NotFound, ValidationFailed, issue
from onderwijsregio.ids import has_shape, new_id
from onderwijsregio.pagination import Page, PageRequest, page_by_id
from onderwijsregio.regions.models import Region
from onderwijsregio.regions.schemas import RateLimitInput, RegionCreate, RegionPatch

DEFAULT_RATE, DEFAULT_BURST = 50, 100
DEFAULT_KEY_RATE, DEFAULT_KEY_BURST = 20, 40


def region_view(region: Region) -> dict[str, Any]:
    return {
        "id": region.id,
        "name": region.name,
        "customFields": region.custom_fields,
        "rateLimit": {
            "requestsPerSecond": region.requests_per_second,
            "burst": region.burst,
            "keyRequestsPerSecond": region.key_requests_per_second,
            "keyBurst": region.key_burst,
        },
        "maxQueuedMutations": region.max_queued_mutations,
        "selfServiceFields": region.self_service_fields,
        "allowedOrigins": region.allowed_origins,
        "createdAt": to_rfc3339(region.created_at),
        "updatedAt": to_rfc3339(region.updated_at),
    }


async def create_region(session: AsyncSession, data: RegionCreate) -> Region:
    now = utc_now()
    region = Region(
        id=new_id("reg"),
        name=data.name,
        custom_fields=_definitions(data),
        requests_per_second=DEFAULT_RATE,
        burst=DEFAULT_BURST,
        key_requests_per_second=DEFAULT_KEY_RATE,
        key_burst=DEFAULT_KEY_BURST,
        max_queued_mutations=data.maxQueuedMutations,
        self_service_fields=list(dict.fromkeys(data.selfServiceFields)),
        allowed_origins=list(dict.fromkeys(data.allowedOrigins)),
        version=1,
        created_at=now,
        updated_at=now,
    )
    if data.rateLimit is not None:
        _apply_rate_limit(region, data.rateLimit)
    session.add(region)
    await session.flush()
    return region


async def get_region(session: AsyncSession, region_id: str, *, for_update: bool = False) -> Region:
    region = (
        await session.get(Region, region_id, with_for_update=for_update)
        if has_shape(region_id, "reg")
        else None
    )
    if region is None:
        raise NotFound("Region not found")
    return region


async def update_region(session: AsyncSession, region_id: str, data: RegionPatch) -> Region:
    # Locked until the change commits: concurrent changes apply one after the other, never lost.
    region = await get_region(session, region_id, for_update=True)
    if data.name is not None:
        region.name = data.name
    if data.customFields is not None:
        region.custom_fields = _definitions(data)
    if data.rateLimit is not None:
        _apply_rate_limit(region, data.rateLimit)
    if data.maxQueuedMutations is not None:
        region.max_queued_mutations = data.maxQueuedMutations
    if data.selfServiceFields is not None:
        region.self_service_fields = list(dict.fromkeys(data.selfServiceFields))
    if data.allowedOrigins is not None:
        region.allowed_origins = list(dict.fromkeys(data.allowedOrigins))
    region.version += 1
    region.updated_at = max(utc_now(), region.updated_at)
    await session.flush()
    return region


async def list_regions(session: AsyncSession, page: PageRequest, cursors: CursorCodec) -> Page:
    return await page_by_id(session, select(Region), Region.id, page, cursors, "regions")


def _definitions(data: RegionCreate | RegionPatch) -> list[dict[str, Any]]:
    return [field.model_dump(exclude_none=True) for field in data.customFields or []]


def _apply_rate_limit(region: Region, limits: RateLimitInput) -> None:
    region.requests_per_second = limits.requestsPerSecond or region.requests_per_second
    region.burst = limits.burst or region.burst
    region.key_requests_per_second = limits.keyRequestsPerSecond or region.key_requests_per_second
    region.key_burst = limits.keyBurst or region.key_burst
    problems = []
    if region.burst < region.requests_per_second:
        problems.append(
            issue(["rateLimit", "burst"], "burst_below_rate", "burst must be at least requestsPerSecond")
        )
    if region.key_burst < region.key_requests_per_second:
        problems.append(
            issue(
                ["rateLimit", "keyBurst"],
                "burst_below_rate",
                "keyBurst must be at least keyRequestsPerSecond",
            )
        )
    if problems:
        raise ValidationFailed(issues=problems)
