"""Applying candidate mutations inside the engine's ordered batch (contract §3.2)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from onderwijsregio.candidates.models import Candidate, Interaction
from onderwijsregio.candidates.normalize import email_key, phone_key
from onderwijsregio.engine.operations import (
    ApplyContext,
    ItemFailed,
    ItemOutcome,
    Operation,
    on_sandbox_reset,
    register,
)
from onderwijsregio.scope import Scope, scoped

CREATE = "candidates.create"


async def apply_create(context: ApplyContext, item: dict[str, Any], _prepared: Any) -> ItemOutcome:
    exists = await context.session.scalar(
        scoped(select(Candidate.id), Candidate, context.scope).where(Candidate.id == item["id"])
    )
    if exists is not None:
        raise ItemFailed("conflict", "A candidate with this id exists")
    properties = dict(item["candidate"])
    interactions = properties.pop("interactions", None) or []
    context.session.add(new_candidate(context, item["id"], properties))
    await context.session.flush()
    for interaction_id, interaction in zip(item["interactionIds"], interactions, strict=True):
        context.session.add(new_interaction(context, item["id"], interaction_id, interaction))
    return ItemOutcome("candidate", item["id"], "created")


def new_candidate(context: ApplyContext, candidate_id: str, properties: dict[str, Any]) -> Candidate:
    properties.setdefault("phase", "nieuw")
    return Candidate(
        region_id=context.scope.region_id,
        sandbox=context.scope.sandbox,
        id=candidate_id,
        properties=properties,
        email_key=email_key(properties["email"]),
        phone_key=phone_key(properties["phone"]) if properties.get("phone") else None,
        phase=properties["phase"],
        archived=False,
        privacy_consent_at=context.now if properties.get("privacyConsent") else None,
        change_seq=context.next_change(),
        created_at=context.now,
        updated_at=context.now,
    )


def new_interaction(
    context: ApplyContext, candidate_id: str, interaction_id: str, properties: dict[str, Any]
) -> Interaction:
    return Interaction(
        region_id=context.scope.region_id,
        sandbox=context.scope.sandbox,
        id=interaction_id,
        candidate_id=candidate_id,
        performed_at=datetime.fromisoformat(properties["performedAt"]),
        properties=properties,
        created_at=context.now,
        updated_at=context.now,
    )


register(Operation(CREATE, apply_create))


@on_sandbox_reset
async def forget_sandbox_candidates(session: AsyncSession, scope: Scope, _reset_id: str) -> None:
    """Candidates and (by cascade, and explicitly for engines without it) their interactions."""
    await session.execute(scoped(delete(Interaction), Interaction, scope))
    await session.execute(scoped(delete(Candidate), Candidate, scope))
