"""Who is calling: the principal behind a key, and the region context a region route acts in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from onderwijsregio.regions.models import Region
from onderwijsregio.scope import Scope


class Permission(StrEnum):
    read = "read"  # every GET of candidate data
    write = "write"  # every mutation
    manage = "manage"  # API keys, webhooks, signing secret, sandbox reset


ALL_PERMISSIONS = frozenset(Permission)


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    is_admin: bool
    region_id: str | None
    permissions: frozenset[Permission]
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What authentication needs of a stored key, with its region for region keys."""

    principal: Principal
    region: Region | None


@dataclass(frozen=True, slots=True)
class RegionContext:
    """A region route's caller: a region key, or an admin key acting through `x-region-id`."""

    principal: Principal
    region: Region
    scope: Scope
