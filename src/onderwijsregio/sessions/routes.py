"""Candidate verification and sessions (contract §3.5): a region's key asks for a code and opens a
session; the session token then works on the `/auth/candidates/session` routes, and only there."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from onderwijsregio.auth.dependencies import CandidateSessionAccess, RegionWrite, SessionCaller
from onderwijsregio.auth.schemas import RegionContext
from onderwijsregio.candidates import service as candidates
from onderwijsregio.candidates.validation import models_of, validated_one
from onderwijsregio.context import AppContext, request_context
from onderwijsregio.dependencies import DbSession
from onderwijsregio.engine.accept import Submission, WriteOptions
from onderwijsregio.engine.http import accept_write, write_options
from onderwijsregio.engine.wakeup import MAIL_CHANNEL, wake_after_commit
from onderwijsregio.envelope import Envelope, respond
from onderwijsregio.errors import BadRequest, NotFound, Unauthorized, ValidationFailed, issue
from onderwijsregio.middleware import API_PREFIX, SANDBOX_PREFIX
from onderwijsregio.mutations import service as mutations
from onderwijsregio.mutations.schemas import Accepted
from onderwijsregio.openapi_docs import error_responses
from onderwijsregio.scope import Scope
from onderwijsregio.sessions import apply, service
from onderwijsregio.sessions.models import SessionMutation
from onderwijsregio.sessions.schemas import (
    NewSessionAnswer,
    SessionAnswer,
    SessionInput,
    VerificationAnswer,
    VerificationInput,
)

router = APIRouter(prefix=API_PREFIX, tags=["Auth"])
Writer = Annotated[RegionContext, Depends(RegionWrite)]
CandidateCaller = Annotated[SessionCaller, Depends(CandidateSessionAccess)]
Context = Annotated[AppContext, Depends(request_context)]
SESSION_PATH = "/auth/candidates/session"


@router.post(
    "/auth/candidates/verification",
    status_code=202,
    summary="Mail a sign-in code to a candidate's e-mail address (the same answer for unknown ones)",
    response_model=Envelope[VerificationAnswer],
    responses=error_responses(400, 401, 403, 415, 422, 429),
)
async def request_code(
    request: Request, body: VerificationInput, caller: Writer, session: DbSession, context: Context
) -> Response:
    scope, now, key = caller.scope, context.clock(), context.engine.box.fingerprint_key
    allowed = await context.limiter.within(
        f"verify-email:{service.private_name(key, scope, body.email)}", *service.PER_EMAIL
    ) and await context.limiter.within(f"verify-key:{caller.principal.key_id}", *service.PER_KEY)
    answer: dict[str, Any] = {"expiresInSeconds": int(service.CODE_LIFETIME.total_seconds())}
    if scope.sandbox:  # no mail: the code is in the answer, known address or not
        known = allowed and await service.is_known(session, scope, service.email_key(body.email))
        code = service.new_code()
        if known:
            await service.issue_code(session, scope, key, service.email_key(body.email), now, code=code)
        answer["sandboxCode"] = code
    elif allowed:  # the same work for every address: the mail sender looks it up afterwards
        service.queue_request(session, scope, body.email, now)
        await wake_after_commit(session, context.engine.mail_waker, MAIL_CHANNEL)
    return respond(request, answer, "If the address is known here, a code is on its way", 202)


@router.post(
    "/auth/candidates/sessions",
    status_code=201,
    summary="Open a candidate session with the e-mailed code",
    response_model=Envelope[NewSessionAnswer],
    responses=error_responses(400, 401, 403, 415, 422, 429),
)
async def open_session(request: Request, body: SessionInput, caller: Writer, context: Context) -> Response:
    now, key = context.clock(), context.engine.box.fingerprint_key
    # A wrong code must be counted even though the answer is an error: its own transaction.
    async with context.write_sessions() as session, session.begin():
        redeemed = await service.redeem(session, caller.scope, key, body.email, body.code, now)
        opened = await service.open_session(session, caller.scope, body.email, now) if redeemed else None
    if opened is None:
        raise Unauthorized()
    return respond(request, opened.view(), "Session opened", 201)


@router.get(
    SESSION_PATH,
    summary="The session and the candidate records of its e-mail address",
    response_model=Envelope[SessionAnswer],
    responses=error_responses(401, 429),
)
async def read_session(request: Request, candidate: CandidateCaller, session: DbSession) -> Response:
    scope = candidate.caller.scope
    records = await candidates.find(session, scope, candidate.email_key, None, "all")
    answer = {
        "email": candidate.email_key,
        "regionId": scope.region_id,
        "expiresAt": service.to_rfc3339(candidate.expires_at),
        "candidates": records,
    }
    return respond(request, answer, "Session retrieved")


@router.delete(
    SESSION_PATH,
    summary="Log out: the token is dead at once",
    response_model=Envelope[None],
    responses=error_responses(401, 429),
)
async def log_out(
    request: Request, candidate: CandidateCaller, session: DbSession, context: Context
) -> Response:
    await service.end_session(session, candidate.caller.scope, candidate.session_id, context.clock())
    return respond(request, None, "Logged out")


def session_write_options(options: Annotated[WriteOptions, Depends(write_options)]) -> WriteOptions:
    if options.callback_url is not None:
        raise BadRequest("callbackUrl is not available to candidate sessions; read the mutation instead")
    return options


SessionOptions = Annotated[WriteOptions, Depends(session_write_options)]


@router.patch(
    f"{SESSION_PATH}/candidates/{{candidateId}}",
    status_code=202,
    summary="Change one's own candidate record (only the fields the region opened to self-service)",
    response_model=Envelope[Accepted],
    responses=error_responses(400, 401, 404, 415, 422, 429),
)
async def update_own_candidate(
    request: Request,
    candidateId: str,
    candidate: CandidateCaller,
    session: DbSession,
    options: SessionOptions,
    body: Annotated[Any, Body(description="Only the region's selfServiceFields")],
) -> Response:
    region = candidate.caller.region
    allowed = set(region.self_service_fields)
    if isinstance(body, dict) and (refused := sorted(set(body) - allowed)):
        raise ValidationFailed(
            issues=[
                issue([name], "not_self_service", f"Allowed: {', '.join(sorted(allowed))}")
                for name in refused
            ]
        )
    _, update_model = models_of(region)
    changes = validated_one(update_model, body)
    item = {"id": candidateId, "emailKey": candidate.email_key, "patch": changes}
    return await _accept(
        request, candidate, session, options, Submission(apply.SELF_UPDATE, [item], [candidateId])
    )


@router.delete(
    f"{SESSION_PATH}/candidates/{{candidateId}}",
    status_code=202,
    summary="Erase one's own candidate record (as DELETE /candidates/{id})",
    response_model=Envelope[Accepted],
    responses=error_responses(400, 401, 404, 429),
)
async def erase_own_candidate(
    request: Request,
    candidateId: str,
    candidate: CandidateCaller,
    session: DbSession,
    options: SessionOptions,
) -> Response:
    item = {"id": candidateId, "emailKey": candidate.email_key}
    return await _accept(
        request, candidate, session, options, Submission(apply.SELF_DELETE, [item], [candidateId])
    )


async def _accept(
    request: Request,
    candidate: SessionCaller,
    session: AsyncSession,
    options: WriteOptions,
    submission: Submission,
) -> Response:
    """Accepted for one's own candidate only (else 404 at once); the 202 points at the session's view."""
    scope = candidate.caller.scope
    candidate_id = submission.items[0]["id"]

    async def submit() -> Submission:
        await service.ensure_own(session, scope, candidate_id, candidate.email_key)
        return replace(
            submission,
            on_insert=lambda db, mutation_id: db.add(_link(scope, candidate.session_id, mutation_id)),
            status_url=lambda mutation_id: _status_url(scope, mutation_id),
        )

    return await accept_write(request, candidate.caller, session, options, submit)


def _link(scope: Scope, session_id: str, mutation_id: str) -> SessionMutation:
    return SessionMutation(
        region_id=scope.region_id, sandbox=scope.sandbox, mutation_id=mutation_id, session_id=session_id
    )


def _status_url(scope: Scope, mutation_id: str) -> str:
    return f"{SANDBOX_PREFIX if scope.sandbox else API_PREFIX}{SESSION_PATH}/mutations/{mutation_id}"


@router.get(
    f"{SESSION_PATH}/mutations/{{mutationId}}",
    summary="A mutation this session created",
    response_model=Envelope[dict[str, Any]],
    responses=error_responses(401, 404, 429),
)
async def read_own_mutation(
    request: Request, mutationId: str, candidate: CandidateCaller, session: DbSession
) -> Response:
    scope = candidate.caller.scope
    if not await service.created_by(session, scope, mutationId, candidate.session_id):
        raise NotFound("Mutation not found")
    found = await mutations.get_mutation(session, scope, mutationId)
    return respond(request, found | {"callback": None}, "Mutation retrieved")
