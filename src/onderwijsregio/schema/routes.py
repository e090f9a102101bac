"""GET /schema (contract §3.1)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from onderwijsregio.auth.dependencies import RegionAccess
from onderwijsregio.auth.schemas import RegionContext
from onderwijsregio.envelope import Envelope, respond
from onderwijsregio.middleware import API_PREFIX
from onderwijsregio.openapi_docs import error_responses
from onderwijsregio.schema.service import Operation, candidate_schema

router = APIRouter(prefix=API_PREFIX, tags=["Schema"])
# Any key of the region: a website form with a write-only key builds its form from it.
AnyKey = RegionAccess(None)


@router.get(
    "/schema",
    summary="The JSON Schema (draft 2020-12) of this region's candidate payload",
    response_model=Envelope[dict[str, Any]],
    responses=error_responses(400, 401, 403, 429),
)
async def read_schema(
    request: Request,
    caller: Annotated[RegionContext, Depends(AnyKey)],
    operation: Annotated[Operation, Query(description="create (default) or update")] = "create",
) -> Response:
    return respond(request, candidate_schema(caller.region, operation), "Schema retrieved")
