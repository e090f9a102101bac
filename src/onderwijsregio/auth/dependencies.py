"""Authentication declared per route (contract §1.2): every route names one of these.

- `PublicAccess`: no credentials (operations routes only).
- `AdminAccess`: an admin key.
- `RegionAccess(permission, platform=...)`: a region key, or an admin key with `x-region-id`
  (the admin override, audited). `platform=True` marks routes that are the same in live and
  sandbox mode (regions, api-keys) and answer `sandboxEnabled: false`.
- `SessionAccess`: a candidate's session token, on the candidate self-service routes only.
- `MetricsAccess`: the scraper's token (ONDERWIJSREGIO_METRICS_TOKEN), on `/metrics` only.

A guard test walks the route table and fails for any route that declares none of them.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Header, Request, Security
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from onderwijsregio.auth import service
from onderwijsregio.auth.schemas import KeyRecord, Permission, Principal, RegionContext
from onderwijsregio.context import AppContext, request_context
from onderwijsregio.envelope import request_state
from onderwijsregio.errors import BadRequest, Forbidden, NotFound, RateLimited, Unauthorized
from onderwijsregio.ids import has_shape
from onderwijsregio.ratelimit import Bucket
from onderwijsregio.regions.models import Region
from onderwijsregio.regions.service import DEFAULT_KEY_BURST, DEFAULT_KEY_RATE
from onderwijsregio.scope import Scope
from onderwijsregio.sessions.service import live_session

API_KEY_HEADER = APIKeyHeader(
    name="x-api-key", scheme_name="ApiKey", auto_error=False, description="A region key or an admin key."
)
LEGACY_KEY_HEADER = APIKeyHeader(
    name="api-key",
    scheme_name="LegacyApiKey",
    auto_error=False,
    description="Deprecated alias of x-api-key; answers carry `Deprecation: true`.",
)
DEPRECATION_WARNING = "The api-key header is deprecated; use x-api-key."
# Keys are never taken from a URL (they would end up in logs and browser histories).
_KEY_QUERY_NAMES = frozenset({"api-key", "x-api-key", "apikey", "api_key", "apiKey", "key"})


class PublicAccess:
    """No credentials: the route is on the explicit public list."""

    async def __call__(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class PresentedKey:
    value: str | None
    legacy_header: bool


async def presented_key(
    x_api_key: Annotated[str | None, Security(API_KEY_HEADER)] = None,
    legacy_key: Annotated[str | None, Security(LEGACY_KEY_HEADER)] = None,
) -> PresentedKey:
    """The key from its header; the deprecated `api-key` header only when `x-api-key` is absent."""
    if x_api_key is None and legacy_key is not None:
        return PresentedKey(legacy_key, legacy_header=True)
    return PresentedKey(x_api_key, legacy_header=False)


Context = Annotated[AppContext, Depends(request_context)]
Presented = Annotated[PresentedKey, Depends(presented_key)]


class AdminAccess:
    async def __call__(self, request: Request, context: Context, key: Presented) -> Principal:
        request_state(request)["platform_route"] = True
        record = await _authenticate(request, context, key)
        if not record.principal.is_admin:
            raise Forbidden("This route needs an admin key")
        return record.principal


class RegionAccess:
    def __init__(self, permission: Permission | None, *, platform: bool = False) -> None:
        self.permission = permission
        self.platform = platform

    async def __call__(
        self,
        request: Request,
        context: Context,
        key: Presented,
        x_region_id: Annotated[
            str | None,
            Header(alias="x-region-id", description="Admin keys only: the region to act for (audited)."),
        ] = None,
    ) -> RegionContext:
        state = request_state(request)
        state["platform_route"] = self.platform
        record = await _authenticate(request, context, key)
        principal = record.principal
        if principal.is_admin:
            region = await _override_region(request, context, principal, x_region_id)
        else:
            assert record.region is not None
            region = record.region
            if x_region_id is not None and x_region_id != region.id:
                raise Forbidden("A region key acts only for its own region")
        state["region_id"] = region.id
        if self.permission is not None and self.permission not in principal.permissions:
            raise Forbidden(f"This key lacks the '{self.permission}' permission")
        sandbox = bool(state.get("sandbox")) and not self.platform
        return RegionContext(principal, region, Scope(region.id, sandbox))


async def _authenticate(request: Request, context: AppContext, key: PresentedKey) -> KeyRecord:
    """The key behind the request, counted against its rate limits; one Unauthorized for every failure."""
    state = request_state(request)
    if key.legacy_header:
        state["deprecated_header"] = True
        state.setdefault("warnings", []).append(DEPRECATION_WARNING)
    if _KEY_QUERY_NAMES.intersection(request.query_params.keys()) or not key.value:
        raise Unauthorized()
    # A short read of its own, not the request's transaction: that one begins when the route needs it.
    async with context.sessions() as session:
        record = await service.find_key(session, key.value.strip())
    context.key_usage.note(record.principal.key_id)
    state["key_id"] = record.principal.key_id
    await _rate_limit(request, context, _buckets(record))
    return record


async def _override_region(
    request: Request, context: AppContext, principal: Principal, region_id: str | None
) -> Region:
    if not region_id:
        raise BadRequest("An admin key acts on region data only with the x-region-id header")
    region = None
    if has_shape(region_id, "reg"):
        async with context.sessions() as session:
            region = await session.get(Region, region_id)
    if region is None:
        raise NotFound("No region with the id given in x-region-id")
    route = request.scope.get("route")
    template = getattr(route, "path", request.url.path)
    await service.record_override(
        context.write_sessions, principal.key_id, region.id, request.method, template
    )
    return region


def _buckets(record: KeyRecord) -> list[Bucket]:
    """The key's own bucket first, then its region's: a key over its own limit never drains its region."""
    key_id, region = record.principal.key_id, record.region
    if region is None:  # admin keys: the default key limits, and no region's bucket
        return [Bucket(f"key:{key_id}", DEFAULT_KEY_RATE, DEFAULT_KEY_BURST)]
    return [
        Bucket(f"key:{key_id}", region.key_requests_per_second, region.key_burst),
        Bucket(f"region:{region.id}", region.requests_per_second, region.burst),
    ]


async def _rate_limit(request: Request, context: AppContext, buckets: list[Bucket]) -> None:
    decision = await context.limiter.hit(buckets)
    request_state(request)["rate_limit"] = decision
    if not decision.allowed:
        raise RateLimited(
            "Too many requests; retry after the number of seconds in Retry-After",
            headers={"retry-after": str(decision.retry_after_seconds)},
        )


BEARER = HTTPBearer(
    scheme_name="CandidateSession",
    auto_error=False,
    description="A candidate's session token (POST /auth/candidates/sessions); session routes only.",
)


@dataclass(frozen=True, slots=True)
class SessionCaller:
    """A candidate's session: acts in its region and mode for the candidates of its e-mail address."""

    caller: RegionContext  # for the engine: the session as a principal with read and write
    session_id: str
    email_key: str
    expires_at: datetime


class SessionAccess:
    """A candidate session token (`Authorization: Bearer`); API keys do not open these routes."""

    async def __call__(
        self,
        request: Request,
        context: Context,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
    ) -> SessionCaller:
        state = request_state(request)
        if bearer is None or bearer.scheme.lower() != "bearer":
            raise Unauthorized()
        async with context.write_sessions() as session, session.begin():
            found = await live_session(
                session, bearer.credentials, bool(state.get("sandbox")), context.clock()
            )
            region = await session.get(Region, found.region_id) if found is not None else None
        if found is None or region is None:
            raise Unauthorized()
        state["region_id"] = region.id
        await _rate_limit(request, context, _session_buckets(found.id, region))
        origin = request.headers.get("origin")
        if origin is not None and origin in region.allowed_origins:
            state["cors_origin"] = origin
        principal = Principal(found.id, False, region.id, SESSION_PERMISSIONS, found.expires_at)
        caller = RegionContext(principal, region, Scope(region.id, found.sandbox))
        return SessionCaller(caller, found.id, found.email_key, found.expires_at)


SESSION_PERMISSIONS = frozenset({Permission.read, Permission.write})


def _session_buckets(session_id: str, region: Region) -> list[Bucket]:
    return [
        Bucket(f"session:{session_id}", region.key_requests_per_second, region.key_burst),
        Bucket(f"region:{region.id}", region.requests_per_second, region.burst),
    ]


class MetricsAccess:
    """`Authorization: Bearer <ONDERWIJSREGIO_METRICS_TOKEN>`, what Prometheus's `authorization`
    setting sends. Without a configured token the route does not exist (404), so an installation
    that never meant to publish metrics does not."""

    async def __call__(self, request: Request, context: Context) -> None:
        expected = context.settings.metrics_token
        if not expected:
            raise NotFound("No such route")
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        # Constant time: the comparison must not tell a guesser how much of the token was right.
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
            raise Unauthorized()


AccessDeclaration = PublicAccess | AdminAccess | RegionAccess | SessionAccess | MetricsAccess


def route_access(route: APIRoute) -> AccessDeclaration | None:
    """The access a route declares (searched through its dependency tree), or None."""
    pending = list(route.dependant.dependencies)
    while pending:
        dependant = pending.pop()
        if isinstance(dependant.call, AccessDeclaration):
            return dependant.call
        pending.extend(dependant.dependencies)
    return None


# The declarations routes use.
Public = PublicAccess()
Admin = AdminAccess()
RegionRead = RegionAccess(Permission.read)
RegionWrite = RegionAccess(Permission.write)
RegionManage = RegionAccess(Permission.manage)
RegionAnyKey = RegionAccess(None, platform=True)
RegionManagePlatform = RegionAccess(Permission.manage, platform=True)
CandidateSessionAccess = SessionAccess()
MetricsScrape = MetricsAccess()

AdminPrincipal = Annotated[Principal, Depends(Admin)]
AnyRegionKey = Annotated[RegionContext, Depends(RegionAnyKey)]
ManagingRegionKey = Annotated[RegionContext, Depends(RegionManagePlatform)]
