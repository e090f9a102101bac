"""Attachment routes (contract §3.4)."""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Body, Depends, Request
from starlette.responses import Response, StreamingResponse

from onderwijsregio.attachments import apply, service
from onderwijsregio.attachments.filetypes import ALLOWED as ALLOWED_TYPES
from onderwijsregio.attachments.schemas import Attachment, AttachmentsAdd
from onderwijsregio.auth.dependencies import RegionRead, RegionWrite
from onderwijsregio.auth.schemas import RegionContext
from onderwijsregio.candidates import service as candidates
from onderwijsregio.candidates.validation import validated_one
from onderwijsregio.context import app_context
from onderwijsregio.dependencies import DbSession
from onderwijsregio.engine.accept import Submission, WriteOptions
from onderwijsregio.engine.http import accept_write, accept_write_to_one, write_options
from onderwijsregio.envelope import Envelope, respond
from onderwijsregio.middleware import API_PREFIX
from onderwijsregio.mutations.schemas import Accepted
from onderwijsregio.openapi_docs import error_responses

router = APIRouter(prefix=API_PREFIX, tags=["Attachments"])
Reader = Annotated[RegionContext, Depends(RegionRead)]
Writer = Annotated[RegionContext, Depends(RegionWrite)]
Options = Annotated[WriteOptions, Depends(write_options)]
_UNSAFE_IN_QUOTES = re.compile(r'[^\x20-\x7e]|["\\]')
DOWNLOAD_HEADERS = {
    "Content-Disposition": {
        "description": "`attachment`, with the sanitised file name",
        "schema": {"type": "string"},
    },
    "X-Content-Type-Options": {"description": "`nosniff`", "schema": {"type": "string"}},
}


@router.post(
    "/candidates/{candidateId}/attachments",
    status_code=202,
    summary="Add 1 to 5 files per field to a candidate (appends; existing files stay)",
    response_model=Envelope[Accepted],
    responses=error_responses(400, 401, 403, 404, 413, 415, 422, 429),
)
async def add_attachments(
    request: Request,
    candidateId: str,
    caller: Writer,
    session: DbSession,
    options: Options,
    body: Annotated[Any, Body(description="`curriculumVitae` and/or `otherAttachments`: 1 to 5 inputs each")],
) -> Response:
    inputs = validated_one(AttachmentsAdd, body)
    context = app_context(request)
    async with service.staging(context.engine.files, context.url_policy, caller.scope) as staging:

        async def submission() -> Submission:
            await candidates.ensure_writable(session, caller.scope, candidateId)
            references = await staging.inputs(inputs, [])
            files = [reference for field in references.values() for reference in field]
            item = {"id": candidateId, "attachments": files}
            return Submission(apply.ADD, [item], [f["id"] for f in files], on_insert=staging.record)

        return await accept_write(request, caller, session, options, submission)


@router.get(
    "/attachments/{attachmentId}",
    summary="An attachment's metadata",
    response_model=Envelope[Attachment],
    responses=error_responses(400, 401, 403, 404, 429),
)
async def read_attachment(
    request: Request, attachmentId: str, caller: Reader, session: DbSession
) -> Response:
    return respond(
        request, await service.get_attachment(session, caller.scope, attachmentId), "Attachment retrieved"
    )


@router.get(
    "/attachments/{attachmentId}/content",
    summary="The file itself (its stored type, as a download, never sniffed)",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The file, in the type its bytes were found to be",
            "content": {kind: {"schema": {"type": "string", "format": "binary"}} for kind in ALLOWED_TYPES},
            "headers": DOWNLOAD_HEADERS,
        },
        **error_responses(400, 401, 403, 404, 429),
    },
)
async def download_attachment(
    request: Request, attachmentId: str, caller: Reader, session: DbSession
) -> Response:
    attachment = await service.find_attachment(session, caller.scope, attachmentId)
    chunks = await service.content(app_context(request).engine.files, attachment)
    headers = {
        "content-disposition": content_disposition(attachment.filename),
        "content-length": str(attachment.size),
        "x-content-type-options": "nosniff",
    }
    return StreamingResponse(chunks, media_type=attachment.content_type, headers=headers)


def content_disposition(filename: str) -> str:
    """`attachment` with a plain-ASCII name for every client and the exact name (RFC 6266) for
    those that read `filename*`; no path, quote or control character survives."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1].strip() or "file"
    plain = _UNSAFE_IN_QUOTES.sub("_", name)
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(name, safe='')}"


@router.delete(
    "/attachments/{attachmentId}",
    status_code=202,
    summary="Remove an attachment and its stored file",
    response_model=Envelope[Accepted],
    responses=error_responses(400, 401, 403, 404, 422, 429),
)
async def delete_attachment(
    request: Request, attachmentId: str, caller: Writer, session: DbSession, options: Options
) -> Response:
    return await accept_write_to_one(
        request, caller, session, options, (apply.REMOVE, attachmentId, {}), service.ensure_writable
    )
