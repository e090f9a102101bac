"""API keys: issue, list, revoke. The secret exists only in the creation answer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from onderwijsregio.api_keys import tokens
from onderwijsregio.api_keys.models import ApiKey
from onderwijsregio.api_keys.schemas import ApiKeyCreate
from onderwijsregio.auth.schemas import ALL_PERMISSIONS, Permission, RegionContext
from onderwijsregio.clock import to_rfc3339, utc_now
from onderwijsregio.cursors import CursorCodec
from onderwijsregio.errors import Forbidden, NotFound
from onderwijsregio.ids import has_shape, new_id
from onderwijsregio.pagination import Page, PageRequest, page_by_id

_PERMISSION_ORDER = [p.value for p in Permission]


def key_view(key: ApiKey, secret: str | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": key.id,
        "name": key.name,
        "scope": key.scope,
        "regionId": key.region_id,
        "permissions": key.permissions,
        "prefix": key.prefix,
        "createdAt": to_rfc3339(key.created_at),
        "expiresAt": to_rfc3339(key.expires_at),
        "lastUsedAt": to_rfc3339(key.last_used_at),
        "revokedAt": to_rfc3339(key.revoked_at),
    }
    if secret is not None:
        view["key"] = secret
    return view


def _new_key(
    *,
    scope: str,
    region_id: str | None,
    name: str,
    permissions: frozenset[Permission],
    created_by: str | None,
    expires_at: datetime | None,
) -> tuple[ApiKey, str]:
    secret = tokens.generate_key()
    key = ApiKey(
        id=new_id("key"),
        scope=scope,
        region_id=region_id,
        name=name,
        prefix=tokens.display_prefix(secret),
        secret_hash=tokens.hash_key(secret),
        permissions=[p for p in _PERMISSION_ORDER if p in permissions],
        created_by_key_id=created_by,
        created_at=utc_now(),
        expires_at=expires_at,
        last_used_at=None,
        revoked_at=None,
    )
    return key, secret


async def create_region_key(
    session: AsyncSession, caller: RegionContext, data: ApiKeyCreate
) -> tuple[ApiKey, str]:
    """A key never gets more than its creator holds (contract §1.2)."""
    held = caller.principal.permissions
    wanted = frozenset(Permission(p) for p in data.permissions) if data.permissions else held
    if not wanted <= held:
        missing = sorted(wanted - held)
        raise Forbidden(f"A key cannot grant permissions its creator lacks: {', '.join(missing)}")
    return await create_region_key_for(
        session,
        caller.region.id,
        data.name,
        wanted,
        created_by=caller.principal.key_id,
        expires_at=data.expiresAt,
    )


async def create_region_key_for(
    session: AsyncSession,
    region_id: str,
    name: str,
    permissions: frozenset[Permission],
    *,
    created_by: str | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    key, secret = _new_key(
        scope="region",
        region_id=region_id,
        name=name,
        permissions=permissions,
        created_by=created_by,
        expires_at=expires_at,
    )
    session.add(key)
    await session.flush()
    return key, secret


async def create_admin_key(
    session: AsyncSession, name: str, *, created_by: str | None = None, expires_at: datetime | None = None
) -> tuple[ApiKey, str]:
    key, secret = _new_key(
        scope="admin",
        region_id=None,
        name=name,
        permissions=ALL_PERMISSIONS,
        created_by=created_by,
        expires_at=expires_at,
    )
    session.add(key)
    await session.flush()
    return key, secret


async def list_keys(
    session: AsyncSession, region_id: str | None, page: PageRequest, cursors: CursorCodec
) -> Page:
    """A region's keys, or (region_id None) the admin keys; revoked ones included with revokedAt."""
    statement = select(ApiKey).where(_owner(region_id))
    return await page_by_id(session, statement, ApiKey.id, page, cursors, f"api-keys:{region_id or 'admin'}")


async def revoke_key(session: AsyncSession, region_id: str | None, key_id: str) -> ApiKey:
    key = (
        await session.scalar(select(ApiKey).where(ApiKey.id == key_id, _owner(region_id)))
        if has_shape(key_id, "key")
        else None
    )
    if key is None:
        raise NotFound("API key not found")
    if key.revoked_at is None:
        key.revoked_at = utc_now()
        await session.flush()
    return key


async def has_active_admin_key(session: AsyncSession) -> bool:
    now = utc_now()
    found = await session.scalar(
        select(ApiKey.id)
        .where(ApiKey.scope == "admin", ApiKey.revoked_at.is_(None))
        .where((ApiKey.expires_at.is_(None)) | (ApiKey.expires_at > now))
        .limit(1)
    )
    return found is not None


def _owner(region_id: str | None) -> Any:
    if region_id is None:
        return ApiKey.scope == "admin"
    return (ApiKey.scope == "region") & (ApiKey.region_id == region_id)
