"""Region routes (contract §3.6): thin; the work is in service.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from onderwijsregio.auth.dependencies import AdminPrincipal, AnyRegionKey
from onderwijsregio.context import AppContext, request_context
from onderwijsregio.dependencies import DbSession
from onderwijsregio.envelope import Envelope, respond, respond_page
from onderwijsregio.middleware import API_PREFIX
from onderwijsregio.openapi_docs import error_responses
from onderwijsregio.pagination import PageRequest, page_request
from onderwijsregio.regions import service
from onderwijsregio.regions.schemas import RegionCreate, RegionOut, RegionPatch

router = APIRouter(prefix=API_PREFIX, tags=["Regions"])
admin_router = APIRouter(prefix=API_PREFIX, tags=["Admin"])


@router.get(
    "/regions/me",
    summary="The caller's region",
    response_model=Envelope[RegionOut],
    responses=error_responses(400, 401, 403, 404, 429),
)
async def read_own_region(request: Request, caller: AnyRegionKey) -> Response:
    return respond(request, service.region_view(caller.region), "Region retrieved")


@admin_router.get(
    "/regions",
    summary="List regions",
    response_model=Envelope[list[RegionOut]],
    responses=error_responses(400, 401, 403, 429),
)
async def list_regions(
    request: Request,
    _admin: AdminPrincipal,
    session: DbSession,
    context: Annotated[AppContext, Depends(request_context)],
    page: Annotated[PageRequest, Depends(page_request)],
) -> Response:
    result = await service.list_regions(session, page, context.cursors)
    items = [service.region_view(region) for region in result.items]
    return respond_page(request, items, "Regions retrieved", cursor=result.cursor, page_size=page.page_size)


@admin_router.post(
    "/regions",
    status_code=201,
    summary="Create a region",
    response_model=Envelope[RegionOut],
    responses=error_responses(400, 401, 403, 413, 415, 422, 429),
)
async def create_region(
    request: Request, _admin: AdminPrincipal, session: DbSession, body: RegionCreate
) -> Response:
    region = await service.create_region(session, body)
    return respond(request, service.region_view(region), "Region created", 201)


@admin_router.get(
    "/regions/{regionId}",
    summary="Read a region",
    response_model=Envelope[RegionOut],
    responses=error_responses(401, 403, 404, 429),
)
async def read_region(
    request: Request, regionId: str, _admin: AdminPrincipal, session: DbSession
) -> Response:
    region = await service.get_region(session, regionId)
    return respond(request, service.region_view(region), "Region retrieved")


@admin_router.patch(
    "/regions/{regionId}",
    summary="Change a region",
    response_model=Envelope[RegionOut],
    responses=error_responses(401, 403, 404, 413, 415, 422, 429),
)
async def update_region(
    request: Request,
    regionId: str,
    _admin: AdminPrincipal,
    session: DbSession,
    body: RegionPatch,
) -> Response:
    region = await service.update_region(session, regionId, body)
    return respond(request, service.region_view(region), "Region updated")
