"""Reading interactions (contract §3.3): one, or a candidate's, newest performedAt first."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, cast, literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from onderwijsregio.candidates.models import Interaction
from onderwijsregio.candidates.service import interaction_view
from onderwijsregio.clock import to_rfc3339
from onderwijsregio.cursors import CursorCodec
from onderwijsregio.db import UtcDateTime
from onderwijsregio.engine.models import UNFINISHED, Mutation
from onderwijsregio.errors import InvalidCursor, NotFound
from onderwijsregio.ids import has_shape
from onderwijsregio.pagination import PageRequest
from onderwijsregio.scope import Scope, scoped


async def get_interaction(session: AsyncSession, scope: Scope, interaction_id: str) -> dict[str, Any]:
    interaction = None
    if has_shape(interaction_id, "int"):
        interaction = await session.scalar(
            scoped(select(Interaction), Interaction, scope).where(Interaction.id == interaction_id)
        )
    if interaction is None:
        raise NotFound("Interaction not found")
    return interaction_view(interaction)


async def list_of_candidate(
    session: AsyncSession, scope: Scope, candidate_id: str, page: PageRequest, cursors: CursorCodec
) -> tuple[list[dict[str, Any]], str | None]:
    statement = scoped(select(Interaction), Interaction, scope).where(
        Interaction.candidate_id == candidate_id
    )
    listing = f"interactions:{scope.region_id}:{scope.sandbox}:{candidate_id}"
    if page.cursor is not None:
        try:
            performed, interaction_id = cursors.decode(listing, page.cursor)
            at = literal(datetime.fromisoformat(str(performed).replace("Z", "+00:00")), UtcDateTime())
        except (ValueError, TypeError):
            raise InvalidCursor() from None
        key = tuple_(Interaction.performed_at, Interaction.id)
        statement = statement.where(key < tuple_(at, literal(str(interaction_id))))
    ordered = statement.order_by(Interaction.performed_at.desc(), Interaction.id.desc())
    rows = list((await session.scalars(ordered.limit(page.page_size + 1))).all())
    more, rows = len(rows) > page.page_size, rows[: page.page_size]
    following = cursors.encode(listing, [to_rfc3339(rows[-1].performed_at), rows[-1].id]) if more else None
    return [interaction_view(i) for i in rows], following


async def ensure_writable(session: AsyncSession, scope: Scope, interaction_id: str) -> None:
    """An interaction that neither exists nor is pending creation here → 404 at once."""
    if has_shape(interaction_id, "int"):
        exists = scoped(select(Interaction.id), Interaction, scope).where(Interaction.id == interaction_id)
        if await session.scalar(exists) is not None:
            return
        pending = await session.scalar(
            scoped(select(Mutation.id), Mutation, scope)
            .where(
                Mutation.status.in_(UNFINISHED),
                cast(Mutation.payload, String).contains(f'"{interaction_id}"'),
            )
            .limit(1)
        )
        # Looked for again: its creation may have been applied between the two looks above.
        if pending is not None or await session.scalar(exists) is not None:
            return
    raise NotFound("Interaction not found")
