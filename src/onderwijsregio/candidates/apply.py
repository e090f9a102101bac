"""Applying candidate mutations inside the engine's ordered batch (contract §3.2)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select

from onderwijsregio.attachments.apply import attach, forget_files_of, has_url_files, prepare_files
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
from onderwijsregio.scope import scoped

CREATE = "candidates.create"


async def apply_create(context: ApplyContext, item: dict[str, Any], prepared: Any) -> ItemOutcome:
    properties = dict(item["candidate"])
    interactions = properties.pop("interactions", None) or []
    # An id in use fails on the key when written, without a look-up first. Rows that refer to the
    # candidate (interactions, attachments) need it written first, so it goes through the session at
    # once; otherwise it waits in the row buffer, to be written with the other new candidates in one
    # INSERT (the ORM does not order inserts by foreign keys here).
    row = candidate_row(context, item["id"], properties)
    if interactions or item.get("attachments"):
        context.session.add(Candidate(**row))
        await context.session.flush()
    else:
        context.rows.add(Candidate, row)
    context.emit("candidate.created", candidateId=item["id"])
    add_interactions(context, item["id"], item["interactionIds"], interactions)
    await attach(context, item["id"], item, prepared)
    return ItemOutcome("candidate", item["id"], "created")


def add_interactions(
    context: ApplyContext, candidate_id: str, ids: list[str], interactions: list[dict[str, Any]]
) -> None:
    """Inline interactions of a create or upsert, with ids given at acceptance."""
    for interaction_id, interaction in zip(ids, interactions, strict=True):
        context.session.add(new_interaction(context, candidate_id, interaction_id, interaction))
        context.emit("interaction.created", candidateId=candidate_id, interactionId=interaction_id)


def new_candidate(context: ApplyContext, candidate_id: str, properties: dict[str, Any]) -> Candidate:
    return Candidate(**candidate_row(context, candidate_id, properties))


def candidate_row(context: ApplyContext, candidate_id: str, properties: dict[str, Any]) -> dict[str, Any]:
    """A new candidate's column values (`properties` gets its default phase)."""
    properties.setdefault("phase", "nieuw")
    return {
        "region_id": context.scope.region_id,
        "sandbox": context.scope.sandbox,
        "id": candidate_id,
        "properties": properties,
        "email_key": email_key(properties["email"]),
        "phone_key": phone_key(properties["phone"]) if properties.get("phone") else None,
        "phase": properties["phase"],
        "archived": False,
        "archived_at": None,
        "privacy_consent_at": context.now if properties.get("privacyConsent") else None,
        "change_seq": context.next_change(),
        "created_at": context.now,
        "updated_at": context.now,
    }


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


register(
    Operation(CREATE, apply_create, prepare_files, independent_items=True, needs_preparing=has_url_files)
)


@on_sandbox_reset
async def forget_sandbox_candidates(context: ApplyContext) -> None:
    """Candidates and (by cascade, and explicitly for engines without it) their interactions."""
    session, scope = context.session, context.scope
    await session.execute(scoped(delete(Interaction), Interaction, scope))
    await session.execute(scoped(delete(Candidate), Candidate, scope))


# What other domains erase with a candidate (its sessions and codes, for one), in the same item.
ErasureStep = Callable[[ApplyContext, Candidate], Awaitable[None]]
_ERASURE_STEPS: list[ErasureStep] = []


def on_erasure(step: ErasureStep) -> ErasureStep:
    _ERASURE_STEPS.append(step)
    return step


UPDATE, UPSERT = "candidates.update", "candidates.upsert"
ARCHIVE, UNARCHIVE, DELETE = "candidates.archive", "candidates.unarchive", "candidates.delete"


async def _existing(context: ApplyContext, candidate_id: str) -> Candidate:
    """Checked again at execution: a candidate erased since acceptance fails the item."""
    candidate = await context.session.scalar(
        scoped(select(Candidate), Candidate, context.scope).where(Candidate.id == candidate_id)
    )
    if candidate is None:
        raise ItemFailed("not_found", "The candidate does not exist (any more)")
    return candidate


def patch(context: ApplyContext, candidate: Candidate, changes: dict[str, Any]) -> None:
    """Patch semantics (§3.2): arrays replaced, scalars overwritten, null clears, customFields per key."""
    properties = dict(candidate.properties)
    consented_before = bool(properties.get("privacyConsent"))
    for name, value in changes.items():
        if name == "customFields":
            merged = {**(properties.get("customFields") or {}), **value}
            properties["customFields"] = {k: v for k, v in merged.items() if v is not None}
        elif value is None:
            properties.pop(name, None)
        else:
            properties[name] = value
    candidate.properties = properties
    candidate.email_key = email_key(properties["email"])
    candidate.phone_key = phone_key(properties["phone"]) if properties.get("phone") else None
    candidate.phase = properties.get("phase", "nieuw")
    if properties.get("privacyConsent") and not consented_before:
        candidate.privacy_consent_at = context.now
    touched(context, candidate)


def touched(context: ApplyContext, candidate: Candidate) -> None:
    candidate.updated_at = context.now
    candidate.change_seq = context.next_change()


async def apply_update(context: ApplyContext, item: dict[str, Any], _prepared: Any) -> ItemOutcome:
    candidate = await _existing(context, item["id"])
    patch(context, candidate, item["patch"])
    context.emit("candidate.updated", candidateId=candidate.id)
    return ItemOutcome("candidate", candidate.id, "updated")


async def apply_archive(context: ApplyContext, item: dict[str, Any], _prepared: Any) -> ItemOutcome:
    candidate = await _existing(context, item["id"])
    archive = item["archive"]
    action = "archived" if archive else "unarchived"
    if candidate.archived != archive:
        candidate.archived, candidate.archived_at = archive, context.now if archive else None
        touched(context, candidate)
        context.emit(f"candidate.{action}", candidateId=candidate.id)
    return ItemOutcome("candidate", candidate.id, action)


async def apply_delete(context: ApplyContext, item: dict[str, Any], _prepared: Any) -> ItemOutcome:
    """Permanent erasure: the candidate, its interactions and attachments (their files go once the
    batch commits)."""
    candidate = await _existing(context, item["id"])
    await context.session.execute(
        scoped(delete(Interaction), Interaction, context.scope).where(
            Interaction.candidate_id == candidate.id
        )
    )
    await forget_files_of(context, candidate.id)
    for step in _ERASURE_STEPS:
        await step(context, candidate)
    await context.session.delete(candidate)
    context.next_change()
    context.emit("candidate.deleted", candidateId=item["id"])
    return ItemOutcome("candidate", item["id"], "deleted")


async def apply_upsert(context: ApplyContext, item: dict[str, Any], prepared: Any) -> ItemOutcome:
    """The oldest candidate with this e-mail (else this phone) is updated; otherwise one is created."""
    properties = dict(item["candidate"])
    interactions = properties.pop("interactions", None) or []
    candidate = await _oldest_match(context, properties)
    if candidate is None:
        candidate = new_candidate(context, item["newId"], properties)
        context.session.add(candidate)
        action = "created"
    else:
        patch(context, candidate, properties)
        action = "updated"
    await context.session.flush()
    context.emit(f"candidate.{action}", candidateId=candidate.id)
    add_interactions(context, candidate.id, item["interactionIds"], interactions)
    await attach(context, candidate.id, item, prepared)
    return ItemOutcome("candidate", candidate.id, action)


async def _oldest_match(context: ApplyContext, properties: dict[str, Any]) -> Candidate | None:
    candidates = scoped(select(Candidate), Candidate, context.scope)
    # Ordered by the matched column first so the planner uses its index (see service.find).
    by_email = candidates.where(Candidate.email_key == email_key(properties["email"]))
    found = await context.session.scalar(
        by_email.order_by(Candidate.email_key, Candidate.created_at).limit(1)
    )
    if found is None and properties.get("phone"):
        by_phone = candidates.where(Candidate.phone_key == phone_key(properties["phone"]))
        found = await context.session.scalar(
            by_phone.order_by(Candidate.phone_key, Candidate.created_at).limit(1)
        )
    return found


for _operation in (
    Operation(UPDATE, apply_update),
    Operation(UPSERT, apply_upsert, prepare_files, needs_preparing=has_url_files),
    Operation(ARCHIVE, apply_archive),
    Operation(UNARCHIVE, apply_archive),
    Operation(DELETE, apply_delete),
):
    register(_operation)
