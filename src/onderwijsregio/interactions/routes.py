"""Interaction routes (contract §3.3)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from starlette.responses import Response

from onderwijsregio.auth.dependencies import RegionRead, RegionWrite
from onderwijsregio.auth.schemas import RegionContext
from onderwijsregio.candidates import service as candidates
from onderwijsregio.candidates.validation import as_items, validated, validated_one
from onderwijsregio.context import AppContext, request_context
from onderwijsregio.dependencies import DbSession
from onderwijsregio.engine.accept import Submission, WriteOptions
from onderwijsregio.engine.http import accept_write, accept_write_to_one, write_options
from onderwijsregio.envelope import Envelope, respond, respond_page
from onderwijsregio.ids import new_id
from onderwijsregio.interactions import apply, service
from onderwijsregio.interactions.schemas import InteractionInput, InteractionUpdate
from onderwijsregio.middleware import API_PREFIX
from onderwijsregio.mutations.schemas import Accepted
from onderwijsregio.openapi_docs import error_responses
from onderwijsregio.pagination import PageRequest, page_request

router = APIRouter(prefix=API_PREFIX, tags=["Interactions"])
Reader = Annotated[RegionContext, Depends(RegionRead)]
Writer = Annotated[RegionContext, Depends(RegionWrite)]
Options = Annotated[WriteOptions, Depends(write_options)]


@router.get(
    "/candidates/{candidateId}/interactions",
    summary="A candidate's interactions, newest performedAt first",
    response_model=Envelope[list[dict[str, Any]]],
    responses=error_responses(400, 401, 403, 404, 429),
)
async def list_interactions(
    request: Request,
    candidateId: str,
    caller: Reader,
    session: DbSession,
    context: Annotated[AppContext, Depends(request_context)],
    page: Annotated[PageRequest, Depends(page_request)],
) -> Response:
    await candidates.get_candidate(session, caller.scope, candidateId, candidates.Shape(frozenset(), False))
    items, cursor = await service.list_of_candidate(session, caller.scope, candidateId, page, context.cursors)
    return respond_page(request, items, "Interactions retrieved", cursor=cursor, page_size=page.page_size)


@router.post(
    "/candidates/{candidateId}/interactions",
    status_code=202,
    summary="Add 1 to 10 interactions to a candidate (a single object is taken as an array of one)",
    response_model=Envelope[Accepted],
    responses=error_responses(400, 401, 403, 404, 413, 415, 422, 429),
)
async def create_interactions(
    request: Request,
    candidateId: str,
    caller: Writer,
    session: DbSession,
    options: Options,
    body: Annotated[Any, Body(description="One interaction, or an array of 1 to 10")],
) -> Response:
    interactions = validated(InteractionInput, as_items(body))

    async def submission() -> Submission:
        await candidates.ensure_writable(session, caller.scope, candidateId)
        ids = [new_id("int") for _ in interactions]
        items = [
            {"id": i, "candidateId": candidateId, "interaction": x}
            for i, x in zip(ids, interactions, strict=True)
        ]
        return Submission(apply.CREATE, items, ids)

    return await accept_write(request, caller, session, options, submission)


@router.get(
    "/interactions/{interactionId}",
    summary="Read an interaction",
    response_model=Envelope[dict[str, Any]],
    responses=error_responses(400, 401, 403, 404, 429),
)
async def read_interaction(
    request: Request, interactionId: str, caller: Reader, session: DbSession
) -> Response:
    return respond(
        request, await service.get_interaction(session, caller.scope, interactionId), "Interaction retrieved"
    )


@router.patch(
    "/interactions/{interactionId}",
    status_code=202,
    summary="Change an interaction (patch semantics)",
    response_model=Envelope[Accepted],
    responses=error_responses(400, 401, 403, 404, 413, 415, 422, 429),
)
async def update_interaction(
    request: Request,
    interactionId: str,
    caller: Writer,
    session: DbSession,
    options: Options,
    body: Annotated[Any, Body(description="The properties to change")],
) -> Response:
    changes = validated_one(InteractionUpdate, body)
    return await accept_write_to_one(
        request,
        caller,
        session,
        options,
        (apply.UPDATE, interactionId, {"patch": changes}),
        service.ensure_writable,
    )


@router.delete(
    "/interactions/{interactionId}",
    status_code=202,
    summary="Delete an interaction",
    response_model=Envelope[Accepted],
    responses=error_responses(400, 401, 403, 404, 422, 429),
)
async def delete_interaction(
    request: Request,
    interactionId: str,
    caller: Writer,
    session: DbSession,
    options: Options,
) -> Response:
    return await accept_write_to_one(
        request, caller, session, options, (apply.DELETE, interactionId, {}), service.ensure_writable
    )
