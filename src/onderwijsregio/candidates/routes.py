"""Candidate routes (contract §3.2). Reads answer at once; writes are mutations (202)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from pydantic import BaseModel, StringConstraints
from starlette.responses import Response

from onderwijsregio.attachments.schemas import FIELDS as ATTACHMENT_FIELDS
from onderwijsregio.attachments.service import Staging, staging
from onderwijsregio.auth.dependencies import RegionRead, RegionWrite
from onderwijsregio.auth.schemas import RegionContext
from onderwijsregio.candidates import apply, service
from onderwijsregio.candidates.schemas import EMAIL_LENGTH, PHONE_LENGTH
from onderwijsregio.candidates.validation import as_items, models_of, validated, validated_one
from onderwijsregio.context import AppContext, app_context, request_context
from onderwijsregio.dependencies import DbSession
from onderwijsregio.engine.accept import Submission, WriteOptions
from onderwijsregio.engine.http import accept_write, accept_write_to_one, write_options
from onderwijsregio.envelope import Envelope, respond, respond_page
from onderwijsregio.ids import new_id
from onderwijsregio.middleware import API_PREFIX
from onderwijsregio.mutations.schemas import Accepted
from onderwijsregio.openapi_docs import error_responses
from onderwijsregio.pagination import PageRequest, page_request
from onderwijsregio.validation import STRICT_INPUT, IsoInstant

router = APIRouter(prefix=API_PREFIX, tags=["Candidates"])
Reader = Annotated[RegionContext, Depends(RegionRead)]
Writer = Annotated[RegionContext, Depends(RegionWrite)]
Fields = Annotated[str | None, Query(max_length=2000, description="Comma-separated properties; id always")]
Include = Annotated[str | None, Query(description="`interactions`: the newest 100 of each candidate")]
ArchivedFilter = Annotated[service.Archived, Query(description="false (default), true or all")]


@router.post(
    "/candidates",
    status_code=202,
    summary="Create 1 to 10 candidates (a single object is taken as an array of one)",
    response_model=Envelope[Accepted],
    responses=error_responses(400, 401, 403, 413, 415, 422, 429),
)
async def create_candidates(
    request: Request,
    caller: Writer,
    session: DbSession,
    options: Annotated[WriteOptions, Depends(write_options)],
    body: Annotated[Any, Body(description="One candidate, or an array of 1 to 10; see GET /schema")],
) -> Response:
    create_model, _ = models_of(caller.region)
    candidates = validated(create_model, as_items(body))
    context = app_context(request)
    async with staging(context.engine.files, context.url_policy, caller.scope) as files:

        async def submission() -> Submission:
            items = []
            for index, candidate in enumerate(candidates):
                item = await _item(candidate, files, [index])
                items.append({"id": new_id("cand"), **item})
            ids = [item["id"] for item in items]
            return Submission(apply.CREATE, items, ids, on_insert=files.record)

        return await accept_write(request, caller, session, options, submission)


async def _item(candidate: dict[str, Any], files: Staging, path: list[str | int]) -> dict[str, Any]:
    """A candidate as the engine gets it: properties, ids for its interactions, staged files."""
    given = {name: candidate.pop(name) for name in ATTACHMENT_FIELDS if name in candidate}
    references = await files.inputs(given, path)
    return {
        "candidate": candidate,
        "interactionIds": [new_id("int") for _ in candidate.get("interactions") or []],
        "attachments": [reference for field in references.values() for reference in field],
    }


@router.post(
    "/candidates/upsert",
    status_code=202,
    summary="Create a candidate, or update the oldest one with the same e-mail (else phone)",
    response_model=Envelope[Accepted],
    responses=error_responses(400, 401, 403, 413, 415, 422, 429),
)
async def upsert_candidate(
    request: Request,
    caller: Writer,
    session: DbSession,
    options: Annotated[WriteOptions, Depends(write_options)],
    body: Annotated[Any, Body(description="One candidate; see GET /schema")],
) -> Response:
    create_model, _ = models_of(caller.region)
    candidate = validated_one(create_model, body)
    context = app_context(request)
    async with staging(context.engine.files, context.url_policy, caller.scope) as files:

        async def submission() -> Submission:
            item = {"newId": new_id("cand"), **await _item(candidate, files, [])}
            return Submission(apply.UPSERT, [item], [], on_insert=files.record)

        return await accept_write(request, caller, session, options, submission)


@router.get(
    "/candidates",
    summary="List candidates (keyset pages; sort=updatedAt follows every change)",
    response_model=Envelope[list[dict[str, Any]]],
    responses=error_responses(400, 401, 403, 429),
)
async def list_candidates(
    request: Request,
    caller: Reader,
    session: DbSession,
    context: Annotated[AppContext, Depends(request_context)],
    page: Annotated[PageRequest, Depends(page_request)],
    fields: Fields = None,
    include: Include = None,
    phase: Annotated[str | None, Query(max_length=40)] = None,
    archived: ArchivedFilter = "false",
    updated_since: Annotated[IsoInstant | None, Query(alias="updatedSince")] = None,
    created_since: Annotated[IsoInstant | None, Query(alias="createdSince")] = None,
    sort: Annotated[service.Sort, Query()] = "createdAt",
) -> Response:
    query = service.ListQuery(phase, archived, updated_since, created_since, sort)
    items, cursor = await service.list_candidates(
        session,
        caller.scope,
        query,
        page.page_size,
        page.cursor,
        context.cursors,
        service.shape_of(fields, include),
    )
    return respond_page(request, items, "Candidates retrieved", cursor=cursor, page_size=page.page_size)


class FindQuery(BaseModel):
    model_config = STRICT_INPUT

    # As long as the stored properties may be: a longer value cannot match anything.
    email: Annotated[str, StringConstraints(max_length=EMAIL_LENGTH)] | None = None
    phone: Annotated[str, StringConstraints(max_length=PHONE_LENGTH)] | None = None
    archived: service.Archived = "false"


@router.get(
    "/candidates/find",
    summary="Find candidates by e-mail (case-insensitive) or phone (any notation); prefer POST",
    response_model=Envelope[list[dict[str, Any]]],
    responses=error_responses(400, 401, 403, 429),
)
async def find_by_query(
    request: Request,
    caller: Reader,
    session: DbSession,
    email: Annotated[str | None, Query(max_length=254)] = None,
    phone: Annotated[str | None, Query(max_length=32)] = None,
    archived: ArchivedFilter = "false",
) -> Response:
    found = await service.find(session, caller.scope, email, phone, archived)
    return respond(request, found, "Candidates found")


@router.post(
    "/candidates/find",
    summary="Find candidates, with the e-mail or phone in the body (kept out of URLs and logs)",
    response_model=Envelope[list[dict[str, Any]]],
    responses=error_responses(400, 401, 403, 415, 422, 429),
)
async def find_by_body(request: Request, caller: Reader, session: DbSession, body: FindQuery) -> Response:
    found = await service.find(session, caller.scope, body.email, body.phone, body.archived)
    return respond(request, found, "Candidates found")


@router.get(
    "/candidates/{candidateId}/export",
    summary="Everything stored about a candidate (for a subject access request)",
    response_model=Envelope[dict[str, Any]],
    responses=error_responses(400, 401, 403, 404, 429),
)
async def export_candidate(
    request: Request, candidateId: str, caller: Reader, session: DbSession
) -> Response:
    return respond(request, await service.export(session, caller.scope, candidateId), "Candidate exported")


@router.get(
    "/candidates/{candidateId}",
    summary="Read a candidate",
    response_model=Envelope[dict[str, Any]],
    responses=error_responses(400, 401, 403, 404, 429),
)
async def read_candidate(
    request: Request,
    candidateId: str,
    caller: Reader,
    session: DbSession,
    fields: Fields = None,
    include: Include = None,
) -> Response:
    shape = service.shape_of(fields, include)
    return respond(
        request, await service.get_candidate(session, caller.scope, candidateId, shape), "Candidate retrieved"
    )


@router.patch(
    "/candidates/{candidateId}",
    status_code=202,
    summary="Change a candidate (patch semantics; customFields merge per key)",
    response_model=Envelope[Accepted],
    responses=error_responses(400, 401, 403, 404, 413, 415, 422, 429),
)
async def update_candidate(
    request: Request,
    candidateId: str,
    caller: Writer,
    session: DbSession,
    options: Annotated[WriteOptions, Depends(write_options)],
    body: Annotated[Any, Body(description="The properties to change; see GET /schema?operation=update")],
) -> Response:
    _, update_model = models_of(caller.region)
    changes = validated_one(update_model, body)
    return await accept_write_to_one(
        request,
        caller,
        session,
        options,
        (apply.UPDATE, candidateId, {"patch": changes}),
        service.ensure_writable,
    )


@router.post(
    "/candidates/{candidateId}/archive",
    status_code=202,
    summary="Archive a candidate: hidden from lists and find unless asked for",
    response_model=Envelope[Accepted],
    responses=error_responses(400, 401, 403, 404, 422, 429),
)
async def archive_candidate(
    request: Request,
    candidateId: str,
    caller: Writer,
    session: DbSession,
    options: Annotated[WriteOptions, Depends(write_options)],
) -> Response:
    return await accept_write_to_one(
        request,
        caller,
        session,
        options,
        (apply.ARCHIVE, candidateId, {"archive": True}),
        service.ensure_writable,
    )


@router.post(
    "/candidates/{candidateId}/unarchive",
    status_code=202,
    summary="Bring an archived candidate back",
    response_model=Envelope[Accepted],
    responses=error_responses(400, 401, 403, 404, 422, 429),
)
async def unarchive_candidate(
    request: Request,
    candidateId: str,
    caller: Writer,
    session: DbSession,
    options: Annotated[WriteOptions, Depends(write_options)],
) -> Response:
    return await accept_write_to_one(
        request,
        caller,
        session,
        options,
        (apply.UNARCHIVE, candidateId, {"archive": False}),
        service.ensure_writable,
    )


@router.delete(
    "/candidates/{candidateId}",
    status_code=202,
    summary="Erase a candidate permanently, with its interactions",
    response_model=Envelope[Accepted],
    responses=error_responses(400, 401, 403, 404, 422, 429),
)
async def delete_candidate(
    request: Request,
    candidateId: str,
    caller: Writer,
    session: DbSession,
    options: Annotated[WriteOptions, Depends(write_options)],
) -> Response:
    return await accept_write_to_one(
        request, caller, session, options, (apply.DELETE, candidateId, {}), service.ensure_writable
    )
