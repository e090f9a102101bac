"""A candidate's own changes through a session (contract §3.5); what erasure and the sandbox reset
end (the candidate's sessions, codes and pending verification mail); and the hourly removal of
finished sessions and spent codes, which hold e-mail addresses."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onderwijsregio.candidates.apply import apply_delete, on_erasure, patch
from onderwijsregio.candidates.models import Candidate
from onderwijsregio.clock import utc_now
from onderwijsregio.engine.operations import (
    ApplyContext,
    ItemFailed,
    ItemOutcome,
    Operation,
    on_cleanup,
    on_sandbox_reset,
    register,
)
from onderwijsregio.scope import scoped
from onderwijsregio.sessions.models import (
    CandidateSession,
    SessionMutation,
    VerificationCode,
    VerificationRequest,
)
from onderwijsregio.storage.files import FileStore

SELF_UPDATE, SELF_DELETE = "candidates.self_update", "candidates.self_delete"


async def _own_candidate(context: ApplyContext, item: dict[str, Any]) -> Candidate:
    """Checked again at execution: the candidate must still exist and still have the session's e-mail."""
    candidate = await context.session.scalar(
        scoped(select(Candidate), Candidate, context.scope).where(
            Candidate.id == item["id"], Candidate.email_key == item["emailKey"]
        )
    )
    if candidate is None:
        raise ItemFailed("not_found", "The candidate does not exist (any more)")
    return candidate


async def apply_self_update(context: ApplyContext, item: dict[str, Any], _prepared: Any) -> ItemOutcome:
    candidate = await _own_candidate(context, item)
    patch(context, candidate, item["patch"])
    context.emit("candidate.updated", candidateId=candidate.id)
    return ItemOutcome("candidate", candidate.id, "updated")


async def apply_self_delete(context: ApplyContext, item: dict[str, Any], prepared: Any) -> ItemOutcome:
    await _own_candidate(context, item)
    return await apply_delete(context, item, prepared)


@on_erasure
async def forget_sessions_of(context: ApplyContext, candidate: Candidate) -> None:
    """Erasure ends the sessions, codes and pending mail of the candidate's e-mail address."""
    for model in (CandidateSession, VerificationCode, VerificationRequest):
        await context.session.execute(
            scoped(delete(model), model, context.scope).where(model.email_key == candidate.email_key)
        )


@on_sandbox_reset
async def forget_sandbox_sessions(context: ApplyContext) -> None:
    for model in (CandidateSession, VerificationCode, VerificationRequest, SessionMutation):
        await context.session.execute(scoped(delete(model), model, context.scope))


@on_cleanup
async def forget_finished_sessions(sessions: async_sessionmaker[AsyncSession], _files: FileStore) -> int:
    """Ended or expired sessions and spent or expired codes hold an e-mail address: they go hourly."""
    now = utc_now()
    async with sessions() as session, session.begin():
        over = (CandidateSession.ended_at.is_not(None)) | (CandidateSession.expires_at < now)
        finished = select(CandidateSession.id).where(over).execution_options(cross_region=True)
        await session.execute(
            delete(SessionMutation)
            .where(SessionMutation.session_id.in_(finished))
            .execution_options(cross_region=True)
        )
        gone = await session.execute(
            delete(CandidateSession).where(over).execution_options(cross_region=True)
        )
        spent = (VerificationCode.used_at.is_not(None)) | (VerificationCode.expires_at < now)
        await session.execute(delete(VerificationCode).where(spent).execution_options(cross_region=True))
    return int(gone.rowcount or 0)  # type: ignore[attr-defined]


for _operation in (Operation(SELF_UPDATE, apply_self_update), Operation(SELF_DELETE, apply_self_delete)):
    register(_operation)
