"""Mutation routes (contract §2.3) and the operators' queue view (§3.6)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from starlette.responses import Response

from onderwijsregio.auth.dependencies import AdminPrincipal, RegionAccess, RegionWrite
from onderwijsregio.auth.schemas import RegionContext
from onderwijsregio.context import AppContext, request_context
from onderwijsregio.dependencies import DbSession
from onderwijsregio.envelope import Envelope, respond, respond_page
from onderwijsregio.middleware import API_PREFIX
from onderwijsregio.mutations import service
from onderwijsregio.mutations.schemas import MutationFilters, MutationOut, mutation_filters
from onderwijsregio.openapi_docs import error_responses
from onderwijsregio.pagination import PageRequest, page_request

router = APIRouter(prefix=API_PREFIX, tags=["Mutations"])
admin_router = APIRouter(prefix=API_PREFIX, tags=["Admin"])
# Any key of the region may follow mutations: a write-only form key polls the statusUrl of its 202s.
RegionReadsMutations = RegionAccess(None)
Caller = Annotated[RegionContext, Depends(RegionReadsMutations)]


@router.get(
    "/mutations",
    summary="List mutations",
    response_model=Envelope[list[MutationOut]],
    responses=error_responses(400, 401, 403, 429),
)
async def list_mutations(
    request: Request,
    caller: Caller,
    session: DbSession,
    context: Annotated[AppContext, Depends(request_context)],
    filters: Annotated[MutationFilters, Depends(mutation_filters)],
    page: Annotated[PageRequest, Depends(page_request)],
) -> Response:
    items, cursor = await service.list_mutations(session, caller.scope, filters, page, context.cursors)
    return respond_page(request, items, "Mutations retrieved", cursor=cursor, page_size=page.page_size)


@router.get(
    "/mutations/{mutationId}",
    summary="Read a mutation: its status, per-item results and callback state",
    response_model=Envelope[MutationOut],
    responses=error_responses(400, 401, 403, 404, 429),
)
async def read_mutation(request: Request, mutationId: str, caller: Caller, session: DbSession) -> Response:
    return respond(
        request, await service.get_mutation(session, caller.scope, mutationId), "Mutation retrieved"
    )


@router.post(
    "/mutations/{mutationId}/cancel",
    summary="Cancel a mutation that is still queued",
    response_model=Envelope[MutationOut],
    responses=error_responses(400, 401, 403, 404, 409, 429),
)
async def cancel_mutation(
    request: Request,
    mutationId: str,
    caller: Annotated[RegionContext, Depends(RegionWrite)],
    session: DbSession,
) -> Response:
    return respond(request, await service.cancel(session, caller.scope, mutationId), "Mutation canceled")


class QueueRow(BaseModel):
    regionId: str
    sandbox: bool
    queued: int
    processing: int
    failedLast24h: int
    oldestQueuedAgeSeconds: float | None
    appliedLastMinute: int


@admin_router.get(
    "/admin/queue",
    summary="Queue figures per region and mode",
    description="Only regions with unfinished mutations or mutations finished in the last 24 hours appear.",
    response_model=Envelope[list[QueueRow]],
    responses=error_responses(401, 403, 429),
)
async def queue(request: Request, _admin: AdminPrincipal, session: DbSession) -> Response:
    rows: list[dict[str, Any]] = await service.queue_overview(session)
    return respond(request, rows, "Queue retrieved")
