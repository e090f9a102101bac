"""API key routes (contract §3.6): a region's keys, and the admin keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from onderwijsregio.api_keys import service
from onderwijsregio.api_keys.schemas import AdminKeyCreate, ApiKeyCreate, ApiKeyOut, CreatedApiKey
from onderwijsregio.auth.dependencies import AdminPrincipal, ManagingRegionKey
from onderwijsregio.context import AppContext, request_context
from onderwijsregio.dependencies import DbSession
from onderwijsregio.envelope import Envelope, respond, respond_page
from onderwijsregio.middleware import API_PREFIX
from onderwijsregio.openapi_docs import error_responses
from onderwijsregio.pagination import PageRequest, page_request

router = APIRouter(prefix=API_PREFIX, tags=["Regions"])
admin_router = APIRouter(prefix=API_PREFIX, tags=["Admin"])
Context = Annotated[AppContext, Depends(request_context)]
Paging = Annotated[PageRequest, Depends(page_request)]


@router.get(
    "/api-keys",
    summary="List the region's API keys (never their secrets)",
    response_model=Envelope[list[ApiKeyOut]],
    responses=error_responses(400, 401, 403, 429),
)
async def list_region_keys(
    request: Request, caller: ManagingRegionKey, session: DbSession, context: Context, page: Paging
) -> Response:
    result = await service.list_keys(session, caller.region.id, page, context.cursors)
    items = [service.key_view(key) for key in result.items]
    return respond_page(request, items, "API keys retrieved", cursor=result.cursor, page_size=page.page_size)


@router.post(
    "/api-keys",
    status_code=201,
    summary="Create an API key; the secret is in this answer only",
    response_model=Envelope[CreatedApiKey],
    responses=error_responses(400, 401, 403, 413, 415, 422, 429),
)
async def create_region_key(
    request: Request, caller: ManagingRegionKey, session: DbSession, body: ApiKeyCreate
) -> Response:
    key, secret = await service.create_region_key(session, caller.region.id, caller.principal, body)
    return respond(request, service.key_view(key, secret), "API key created", 201)


@router.delete(
    "/api-keys/{keyId}",
    summary="Revoke an API key (effective on the next request)",
    response_model=Envelope[ApiKeyOut],
    responses=error_responses(400, 401, 403, 404, 429),
)
async def revoke_region_key(
    request: Request, keyId: str, caller: ManagingRegionKey, session: DbSession
) -> Response:
    key = await service.revoke_key(session, caller.region.id, keyId)
    return respond(request, service.key_view(key), "API key revoked")


@admin_router.get(
    "/admin/api-keys",
    summary="List admin keys",
    response_model=Envelope[list[ApiKeyOut]],
    responses=error_responses(400, 401, 403, 429),
)
async def list_admin_keys(
    request: Request, _admin: AdminPrincipal, session: DbSession, context: Context, page: Paging
) -> Response:
    result = await service.list_keys(session, None, page, context.cursors)
    items = [service.key_view(key) for key in result.items]
    return respond_page(
        request, items, "Admin keys retrieved", cursor=result.cursor, page_size=page.page_size
    )


@admin_router.post(
    "/admin/api-keys",
    status_code=201,
    summary="Create an admin key; the secret is in this answer only",
    response_model=Envelope[CreatedApiKey],
    responses=error_responses(401, 403, 413, 415, 422, 429),
)
async def create_admin_key(
    request: Request, admin: AdminPrincipal, session: DbSession, body: AdminKeyCreate
) -> Response:
    key, secret = await service.create_admin_key(
        session, body.name, created_by=admin, expires_at=body.expiresAt
    )
    return respond(request, service.key_view(key, secret), "Admin key created", 201)


@admin_router.delete(
    "/admin/api-keys/{keyId}",
    summary="Revoke an admin key",
    response_model=Envelope[ApiKeyOut],
    responses=error_responses(401, 403, 404, 429),
)
async def revoke_admin_key(
    request: Request, keyId: str, _admin: AdminPrincipal, session: DbSession
) -> Response:
    key = await service.revoke_key(session, None, keyId)
    return respond(request, service.key_view(key), "Admin key revoked")
