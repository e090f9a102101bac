"""Resolving credentials to a principal, the admin override, and the override audit log."""

from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onderwijsregio.api_keys import tokens
from onderwijsregio.api_keys.models import ApiKey
from onderwijsregio.auth.models import AdminOverride
from onderwijsregio.auth.schemas import KeyRecord, Permission, Principal
from onderwijsregio.clock import utc_now
from onderwijsregio.errors import Unauthorized
from onderwijsregio.ids import new_id
from onderwijsregio.regions.models import Region

# Built once: every request runs it (see scope.scoped_by_parameters for why).
_KEY_BY_HASH = (
    select(ApiKey, Region)
    .outerjoin(Region, Region.id == ApiKey.region_id)
    .where(ApiKey.secret_hash == bindparam("secret_hash"))
)


async def find_key(session: AsyncSession, presented: str) -> KeyRecord:
    """The active key for a presented secret; every kind of failure is the same Unauthorized."""
    if not tokens.is_well_formed(presented):
        raise Unauthorized()
    row = (await session.execute(_KEY_BY_HASH, {"secret_hash": tokens.hash_key(presented)})).first()
    if row is None:
        raise Unauthorized()
    key, region = row
    if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= utc_now()):
        raise Unauthorized()
    principal = Principal(
        key_id=key.id,
        is_admin=key.scope == "admin",
        region_id=key.region_id,
        permissions=frozenset(Permission(p) for p in key.permissions),
        expires_at=key.expires_at,
    )
    return KeyRecord(principal, region)


async def record_override(
    sessions: async_sessionmaker[AsyncSession], key_id: str, region_id: str, method: str, route: str
) -> None:
    """Commits in its own transaction, the one exception to "services never commit": the audit
    line must stay even when the request it records fails and rolls back."""
    async with sessions() as session, session.begin():
        session.add(
            AdminOverride(
                id=new_id("aud"),
                key_id=key_id,
                region_id=region_id,
                method=method,
                route=route,
                created_at=utc_now(),
            )
        )
