"""Applying attachment changes inside the engine's ordered batch (contract §3.4).

Files reach storage before the apply (base64 at acceptance, URLs in the prepare stage); the apply
only writes rows. Files that end up unused — a failed item, a removed attachment, an erased
candidate — are deleted after the batch commits, and the sweeper catches whatever a crash leaves.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onderwijsregio.attachments.models import Attachment, StagedFile
from onderwijsregio.attachments.service import fetch_into_storage, storage_key
from onderwijsregio.candidates.models import Candidate
from onderwijsregio.clock import utc_now
from onderwijsregio.engine.models import FINAL, Mutation
from onderwijsregio.engine.operations import (
    ApplyContext,
    ItemFailed,
    ItemOutcome,
    Operation,
    PrepareContext,
    on_cleanup,
    on_mutation_applied,
    on_sandbox_reset,
    register,
)
from onderwijsregio.scope import Scope, scoped
from onderwijsregio.storage.files import FileStore

log = logging.getLogger(__name__)
ADD, REMOVE = "attachments.add", "attachments.remove"
# A file in storage that no row knows of is left alone this long: it may belong to an acceptance
# whose transaction has not committed yet.
SWEEP_GRACE = timedelta(hours=1)


def has_url_files(item: dict[str, Any]) -> bool:
    """Whether the item has files to fetch before it is applied."""
    return any("url" in reference for reference in item.get("attachments") or [])


async def prepare_files(context: PrepareContext, item: dict[str, Any]) -> dict[str, Any]:
    """Fetches the item's URL attachments into storage, ahead of the ordered apply."""
    fetched: dict[str, Any] = {}
    for reference in item.get("attachments") or []:
        if "url" in reference:
            key = storage_key(context.scope, reference["id"])
            stored = await fetch_into_storage(context.files, context.policy, key, reference["url"])
            fetched[reference["id"]] = stored.as_json()
    return fetched


async def attach(context: ApplyContext, candidate_id: str, item: dict[str, Any], prepared: Any) -> list[str]:
    """Rows for the item's attachments, whose files are in storage already; their ids."""
    added = []
    for reference in item.get("attachments") or []:
        stored = reference.get("stored") or (prepared or {}).get(reference["id"])
        if stored is None:  # a URL the prepare stage did not fetch: it failed, or never ran
            raise ItemFailed("attachment_fetch_failed", "The file could not be fetched")
        context.session.add(
            Attachment(
                region_id=context.scope.region_id,
                sandbox=context.scope.sandbox,
                id=reference["id"],
                candidate_id=candidate_id,
                field=reference["field"],
                filename=reference["filename"],
                content_type=stored["contentType"],
                size=stored["size"],
                sha256=stored["sha256"],
                storage_key=storage_key(context.scope, reference["id"]),
                created_at=context.now,
            )
        )
        added.append(reference["id"])
        context.emit("attachment.added", candidateId=candidate_id, attachmentId=reference["id"])
    return added


async def apply_add(context: ApplyContext, item: dict[str, Any], prepared: Any) -> ItemOutcome:
    candidate = await context.session.scalar(
        scoped(select(Candidate), Candidate, context.scope).where(Candidate.id == item["id"])
    )
    if candidate is None:
        raise ItemFailed("not_found", "The candidate does not exist (any more)")
    await attach(context, candidate.id, item, prepared)
    candidate.updated_at, candidate.change_seq = context.now, context.next_change()
    return ItemOutcome("attachment", item["attachments"][0]["id"], "added")


async def apply_remove(context: ApplyContext, item: dict[str, Any], _prepared: Any) -> ItemOutcome:
    attachment = await context.session.scalar(
        scoped(select(Attachment), Attachment, context.scope).where(Attachment.id == item["id"])
    )
    if attachment is None:
        raise ItemFailed("not_found", "The attachment does not exist (any more)")
    await context.session.delete(attachment)
    context.discarded.append(attachment.storage_key)
    context.emit("attachment.removed", candidateId=attachment.candidate_id, attachmentId=attachment.id)
    candidate = await context.session.scalar(
        scoped(select(Candidate), Candidate, context.scope).where(Candidate.id == attachment.candidate_id)
    )
    if candidate is not None:
        candidate.updated_at, candidate.change_seq = context.now, context.next_change()
    return ItemOutcome("attachment", attachment.id, "removed")


async def forget_files_of(context: ApplyContext, candidate_id: str) -> None:
    """Erasure: the candidate's attachment rows, and their files once the batch commits."""
    keys = await context.session.scalars(
        scoped(select(Attachment.storage_key), Attachment, context.scope).where(
            Attachment.candidate_id == candidate_id
        )
    )
    context.discarded.extend(keys)
    await context.session.execute(
        scoped(delete(Attachment), Attachment, context.scope).where(Attachment.candidate_id == candidate_id)
    )


@on_mutation_applied
async def settle_staged_files(context: ApplyContext, mutation: Mutation, payload: dict[str, Any]) -> None:
    """The mutation is done: its staged files now belong to an attachment, or are deleted."""
    if not any(item.get("attachments") for item in payload.get("items", [])):
        return  # the common case costs no query; a payload erased meanwhile is left to the sweeper
    staged = scoped(select(StagedFile), StagedFile, context.scope).where(
        StagedFile.mutation_id == mutation.id
    )
    rows = (await context.session.scalars(staged)).all()
    if not rows:
        return
    kept = set(
        await context.session.scalars(
            scoped(select(Attachment.id), Attachment, context.scope).where(
                Attachment.id.in_([row.attachment_id for row in rows])
            )
        )
    )
    context.discarded.extend(row.storage_key for row in rows if row.attachment_id not in kept)
    await context.session.execute(
        scoped(delete(StagedFile), StagedFile, context.scope).where(StagedFile.mutation_id == mutation.id)
    )


@on_sandbox_reset
async def forget_sandbox_files(context: ApplyContext) -> None:
    """Attachment rows, and the staged files of mutations before the reset; their files go once the
    reset commits. Files staged for mutations accepted after the reset stay with them."""
    session, scope = context.session, context.scope
    reset_seq = await session.scalar(
        scoped(select(Mutation.seq), Mutation, scope).where(Mutation.id == context.mutation_id)
    )
    later = scoped(select(Mutation.id), Mutation, scope).where(Mutation.seq > reset_seq)
    forgotten = scoped(select(StagedFile.storage_key), StagedFile, scope).where(
        StagedFile.mutation_id.not_in(later)
    )
    context.discarded.extend(await session.scalars(forgotten))
    context.discarded.extend(await session.scalars(scoped(select(Attachment.storage_key), Attachment, scope)))
    await session.execute(scoped(delete(Attachment), Attachment, scope))
    await session.execute(
        scoped(delete(StagedFile), StagedFile, scope).where(StagedFile.mutation_id.not_in(later))
    )


@on_cleanup
async def sweep(
    sessions: async_sessionmaker[AsyncSession], files: FileStore, grace: timedelta = SWEEP_GRACE
) -> int:
    """Deletes stored files that no attachment and no unfinished mutation holds; returns how many.

    Staged rows of mutations that are final (canceled, or given up on) are dropped first.
    """
    async with sessions() as session, session.begin():
        unfinished = (
            select(Mutation.id).where(Mutation.status.not_in(FINAL)).execution_options(cross_region=True)
        )
        await session.execute(
            delete(StagedFile)
            .where(StagedFile.mutation_id.not_in(unfinished))
            .execution_options(cross_region=True)
        )
    cutoff = utc_now() - grace
    orphans = []
    async for stored in files.objects():
        if stored.modified_at <= cutoff and not await _known(sessions, stored.key):
            orphans.append(stored.key)
    if orphans:
        await files.delete(orphans)
        log.info("sweeper deleted %d stored files no row knew of", len(orphans))
    return len(orphans)


async def _known(sessions: async_sessionmaker[AsyncSession], key: str) -> bool:
    """Whether an attachment or a staged file holds this key (`<region>/<live|sandbox>/<id>`)."""
    parts = key.split("/")
    if len(parts) != 3 or parts[1] not in ("live", "sandbox"):
        return False
    scope, attachment_id = Scope(parts[0], parts[1] == "sandbox"), parts[2]
    async with sessions() as session:
        attached = await session.scalar(
            scoped(select(Attachment.id), Attachment, scope).where(Attachment.id == attachment_id)
        )
        staged = await session.scalar(
            scoped(select(StagedFile.attachment_id), StagedFile, scope).where(
                StagedFile.attachment_id == attachment_id
            )
        )
        return attached is not None or staged is not None


for _operation in (
    Operation(ADD, apply_add, prepare_files, needs_preparing=has_url_files),
    Operation(REMOVE, apply_remove),
):
    register(_operation)
