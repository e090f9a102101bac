"""Applying interaction mutations (contract §3.3) inside the engine's ordered batch."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from onderwijsregio.candidates.apply import new_interaction, touched
from onderwijsregio.candidates.models import Candidate, Interaction
from onderwijsregio.engine.operations import ApplyContext, ItemFailed, ItemOutcome, Operation, register
from onderwijsregio.scope import scoped

CREATE, UPDATE, DELETE = "interactions.create", "interactions.update", "interactions.delete"


async def _candidate(context: ApplyContext, candidate_id: str) -> Candidate:
    """Checked again at execution: a candidate erased since acceptance fails the item."""
    candidate = await context.session.scalar(
        scoped(select(Candidate), Candidate, context.scope).where(Candidate.id == candidate_id)
    )
    if candidate is None:
        raise ItemFailed("not_found", "The candidate does not exist (any more)")
    return candidate


async def _interaction(context: ApplyContext, interaction_id: str) -> Interaction:
    interaction = await context.session.scalar(
        scoped(select(Interaction), Interaction, context.scope).where(Interaction.id == interaction_id)
    )
    if interaction is None:
        raise ItemFailed("not_found", "The interaction does not exist (any more)")
    return interaction


async def apply_create(context: ApplyContext, item: dict[str, Any], _prepared: Any) -> ItemOutcome:
    candidate = await _candidate(context, item["candidateId"])
    context.session.add(new_interaction(context, candidate.id, item["id"], item["interaction"]))
    touched(context, candidate)
    context.emit("interaction.created", candidateId=candidate.id, interactionId=item["id"])
    return ItemOutcome("interaction", item["id"], "created")


async def apply_update(context: ApplyContext, item: dict[str, Any], _prepared: Any) -> ItemOutcome:
    interaction = await _interaction(context, item["id"])
    properties = dict(interaction.properties)
    for name, value in item["patch"].items():
        if value is None:
            properties.pop(name, None)
        else:
            properties[name] = value
    interaction.properties = properties
    interaction.performed_at = datetime.fromisoformat(properties["performedAt"])
    interaction.updated_at = context.now
    context.next_change()
    context.emit("interaction.updated", candidateId=interaction.candidate_id, interactionId=interaction.id)
    return ItemOutcome("interaction", interaction.id, "updated")


async def apply_delete(context: ApplyContext, item: dict[str, Any], _prepared: Any) -> ItemOutcome:
    interaction = await _interaction(context, item["id"])
    await context.session.delete(interaction)
    context.next_change()
    context.emit("interaction.deleted", candidateId=interaction.candidate_id, interactionId=interaction.id)
    return ItemOutcome("interaction", item["id"], "deleted")


for _operation in (
    Operation(CREATE, apply_create),
    Operation(UPDATE, apply_update),
    Operation(DELETE, apply_delete),
):
    register(_operation)
