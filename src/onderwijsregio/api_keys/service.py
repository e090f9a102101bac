"""API keys: issue, list, revoke. The secret exists only in the creation answer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from onderwijsregio.api_keys import tokens
from onderwijsregio.api_keys.models import ApiKey
from onderwijsregio.api_keys.schemas import ApiKeyCreate
from onderwijsregio.auth.schemas import ALL_PERMISSIONS, Permission, Principal
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


@dataclass(frozen=True, slots=True)
class NewKey:
    scope: str  # "region" or "admin"
    region_id: str | None
    name: str
    permissions: frozenset[Permission]
    created_by: str | None = None
    expires_at: datetime | None = None


async def issue_key(session: AsyncSession, new: NewKey) -> tuple[ApiKey, str]:
    """Stores a new key's hash and returns the key with its secret, which is never stored."""
    secret = tokens.generate_key()
    key = ApiKey(
        id=new_id("key"),
        scope=new.scope,
        region_id=new.region_id,
        name=new.name,
        prefix=tokens.display_prefix(secret),
        secret_hash=tokens.hash_key(secret),
        permissions=[p for p in _PERMISSION_ORDER if p in new.permissions],
        created_by_key_id=new.created_by,
        created_at=utc_now(),
        expires_at=new.expires_at,
        last_used_at=None,
        revoked_at=None,
    )
    session.add(key)
    await session.flush()
    return key, secret


async def create_region_key(
    session: AsyncSession, region_id: str, creator: Principal, data: ApiKeyCreate
) -> tuple[ApiKey, str]:
    return await issue_key(session, _bounded_by_creator(region_id, creator, data))


def _bounded_by_creator(region_id: str, creator: Principal, data: ApiKeyCreate) -> NewKey:
    """A key never gets more than its creator holds (contract §1.2): no more permissions, no longer life."""
    held = creator.permissions
    wanted = frozenset(Permission(p) for p in data.permissions) if data.permissions else held
    if not wanted <= held:
        missing = sorted(wanted - held)
        raise Forbidden(f"A key cannot grant permissions its creator lacks: {', '.join(missing)}")
    return NewKey("region", region_id, data.name, wanted, creator.key_id, _lifetime(creator, data.expiresAt))


async def create_admin_key(
    session: AsyncSession,
    name: str,
    *,
    created_by: Principal | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    creator_id = created_by.key_id if created_by else None
    lifetime = _lifetime(created_by, expires_at)
    return await issue_key(session, NewKey("admin", None, name, ALL_PERMISSIONS, creator_id, lifetime))


def _lifetime(creator: Principal | None, requested: datetime | None) -> datetime | None:
    """A key never outlives the key that creates it; without an expiry of its own it gets its creator's."""
    if creator is None or creator.expires_at is None:
        return requested
    if requested is not None and requested > creator.expires_at:
        raise Forbidden("A key cannot outlive the key that creates it")
    return requested or creator.expires_at


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
