"""POST /sandbox/reset (contract §3.8): always a sandbox mutation, whichever mode it is sent in."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from onderwijsregio.auth.dependencies import RegionManage
from onderwijsregio.auth.schemas import RegionContext
from onderwijsregio.dependencies import DbSession
from onderwijsregio.engine.accept import Submission, WriteOptions
from onderwijsregio.engine.http import accept_write, write_options
from onderwijsregio.engine.maintenance import SANDBOX_RESET
from onderwijsregio.envelope import Envelope
from onderwijsregio.middleware import API_PREFIX
from onderwijsregio.mutations.schemas import Accepted
from onderwijsregio.openapi_docs import error_responses
from onderwijsregio.sandbox import apply  # noqa: F401 - registers the sandbox.reset operation
from onderwijsregio.scope import Scope

router = APIRouter(prefix=API_PREFIX, tags=["Sandbox"])


@router.post(
    "/sandbox/reset",
    status_code=202,
    summary="Wipe this region's sandbox data (keeps keys, webhooks and secrets)",
    response_model=Envelope[Accepted],
    responses=error_responses(400, 401, 403, 422, 429),
)
async def reset_sandbox(
    request: Request,
    caller: Annotated[RegionContext, Depends(RegionManage)],
    session: DbSession,
    options: Annotated[WriteOptions, Depends(write_options)],
) -> Response:
    async def submission() -> Submission:
        return Submission(SANDBOX_RESET, [{}], [])

    sandbox = Scope(caller.region.id, sandbox=True)
    return await accept_write(request, caller, session, options, submission, scope=sandbox)
