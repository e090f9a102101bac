"""Mutation routes. The foundation has the operators' queue view; the engine issue adds the rest."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import Response

from onderwijsregio.auth.dependencies import AdminPrincipal
from onderwijsregio.dependencies import DbSession
from onderwijsregio.envelope import Envelope, respond
from onderwijsregio.middleware import API_PREFIX
from onderwijsregio.mutations import service
from onderwijsregio.openapi_docs import error_responses

admin_router = APIRouter(prefix=API_PREFIX, tags=["Admin"])


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
