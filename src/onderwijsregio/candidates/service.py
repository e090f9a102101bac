"""Reading candidates (contract §3.2): one, a keyset-paged list, and find by e-mail or phone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Select, String, bindparam, cast, literal, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from onderwijsregio.attachments.models import Attachment
from onderwijsregio.attachments.schemas import FIELDS as ATTACHMENT_FIELDS
from onderwijsregio.attachments.service import attachment_view, content_url, of_candidates
from onderwijsregio.candidates.models import Candidate, Interaction
from onderwijsregio.candidates.normalize import email_key, phone_key
from onderwijsregio.candidates.properties import INPUT_PROPERTIES
from onderwijsregio.clock import to_rfc3339
from onderwijsregio.cursors import CursorCodec
from onderwijsregio.db import UtcDateTime
from onderwijsregio.engine.models import UNFINISHED, Mutation
from onderwijsregio.engine.views import mutation_view
from onderwijsregio.errors import BadRequest, InvalidCursor, NotFound
from onderwijsregio.ids import has_shape
from onderwijsregio.scope import Scope, scope_parameters, scoped, scoped_by_parameters

OUTPUT_PROPERTIES = [p for p in INPUT_PROPERTIES if p != "interactions"]
LIST_PROPERTIES = {"sectors", "functions", "qualifications", "curriculumVitae", "otherAttachments"}
READ_ONLY = ["regionId", "archived", "archivedAt", "createdAt", "updatedAt", "privacyConsentAt"]
SELECTABLE = sorted({*OUTPUT_PROPERTIES, *READ_ONLY, "interactions"})
INCLUDED_INTERACTIONS = 100
Archived = Literal["false", "true", "all"]
Sort = Literal["createdAt", "-createdAt", "updatedAt"]


@dataclass(frozen=True)
class Shape:
    """Which properties an answer carries (`fields`) and whether it includes interactions."""

    fields: frozenset[str] | None
    interactions: bool


def shape_of(fields: str | None, include: str | None) -> Shape:
    chosen = None
    if fields is not None:
        chosen = frozenset(f.strip() for f in fields.split(",") if f.strip())
        unknown = sorted(chosen - set(SELECTABLE) - {"id"})
        if unknown:
            raise BadRequest(f"Unknown fields: {', '.join(unknown)}. Valid: {', '.join(SELECTABLE)}")
    if include not in (None, "interactions"):
        raise BadRequest("include takes only 'interactions'")
    return Shape(chosen, include == "interactions")


def candidate_view(
    candidate: Candidate,
    shape: Shape,
    interactions: Sequence[Interaction] = (),
    files: Sequence[Attachment] = (),
) -> dict[str, Any]:
    properties = candidate.properties
    view: dict[str, Any] = {"id": candidate.id, "regionId": candidate.region_id}
    for name in OUTPUT_PROPERTIES:
        default: Any = [] if name in LIST_PROPERTIES else {} if name == "customFields" else None
        view[name] = properties.get(name, default)
    for name in ATTACHMENT_FIELDS:
        view[name] = [attachment_view(a) for a in files if a.field == name]
    view.update(
        archived=candidate.archived,
        archivedAt=to_rfc3339(candidate.archived_at),
        createdAt=to_rfc3339(candidate.created_at),
        updatedAt=to_rfc3339(candidate.updated_at),
        privacyConsentAt=to_rfc3339(candidate.privacy_consent_at),
    )
    if shape.interactions:
        view["interactions"] = [interaction_view(i) for i in interactions]
    if shape.fields is not None:
        view = {k: v for k, v in view.items() if k == "id" or k in shape.fields}
    return view


def interaction_view(interaction: Interaction) -> dict[str, Any]:
    properties = interaction.properties
    return {
        "id": interaction.id,
        "candidateId": interaction.candidate_id,
        "type": properties["type"],
        "performedAt": to_rfc3339(interaction.performed_at),
        **{
            name: properties.get(name)
            for name in ("title", "summary", "notes", "durationMinutes", "performedBy")
        },
        "createdAt": to_rfc3339(interaction.created_at),
        "updatedAt": to_rfc3339(interaction.updated_at),
    }


async def get_candidate(
    session: AsyncSession, scope: Scope, candidate_id: str, shape: Shape
) -> dict[str, Any]:
    rows: list[Any] = []
    if has_shape(candidate_id, "cand"):
        parameters = {**scope_parameters(scope), "candidate_id": candidate_id}
        rows = list(await session.execute(_CANDIDATE_WITH_FILES_BY_ID, parameters))
    if not rows:
        raise NotFound("Candidate not found")
    candidate = rows[0][0]
    files = {candidate.id: [attachment for _, attachment in rows if attachment is not None]}
    return (await views(session, scope, [candidate], shape, files))[0]


# Built once: the read of a candidate by id is the API's most frequent query. Its attachments come
# in the same query (a row per attachment, or one row without), a round trip less than reading them
# apart: that one cost about a sixth of a read's CPU here. The join keeps to the candidate's region and mode.
_CANDIDATE_WITH_FILES_BY_ID = (
    scoped_by_parameters(select(Candidate, Attachment), Candidate)
    .outerjoin(
        Attachment,
        (Attachment.region_id == Candidate.region_id)
        & (Attachment.sandbox == Candidate.sandbox)
        & (Attachment.candidate_id == Candidate.id),
    )
    .where(Candidate.id == bindparam("candidate_id"))
    .order_by(Attachment.created_at, Attachment.id)
)


async def views(
    session: AsyncSession,
    scope: Scope,
    candidates: Sequence[Candidate],
    shape: Shape,
    files: dict[str, list[Attachment]] | None = None,
) -> list[dict[str, Any]]:
    """The candidates as answered; their attachments are read unless given (`files`, by candidate)."""
    included: dict[str, list[Interaction]] = {c.id: [] for c in candidates}
    if shape.interactions and candidates:
        rows = await session.scalars(
            scoped(select(Interaction), Interaction, scope)
            .where(Interaction.candidate_id.in_(included))
            .order_by(Interaction.performed_at.desc(), Interaction.id.desc())
        )
        for interaction in rows:
            if len(included[interaction.candidate_id]) < INCLUDED_INTERACTIONS:
                included[interaction.candidate_id].append(interaction)
    if files is None:
        wanted = shape.fields is None or not shape.fields.isdisjoint(ATTACHMENT_FIELDS)
        files = await of_candidates(session, scope, [c.id for c in candidates] if wanted else [])
    return [candidate_view(c, shape, included[c.id], files.get(c.id, ())) for c in candidates]


@dataclass(frozen=True)
class ListQuery:
    phase: str | None
    archived: Archived
    updated_since: datetime | None
    created_since: datetime | None
    sort: Sort


async def list_candidates(
    session: AsyncSession,
    scope: Scope,
    query: ListQuery,
    page_size: int,
    cursor: str | None,
    cursors: CursorCodec,
    shape: Shape,
) -> tuple[list[dict[str, Any]], str | None]:
    statement = _filtered(scoped(select(Candidate), Candidate, scope), query)
    listing = f"candidates:{scope.region_id}:{scope.sandbox}:{query.sort}"
    if cursor is not None:
        statement = _after(statement, query.sort, cursors.decode(listing, cursor))
    rows = list((await session.scalars(_ordered(statement, query.sort).limit(page_size + 1))).all())
    more = len(rows) > page_size
    rows = rows[:page_size]
    following = cursors.encode(listing, _position(rows[-1], query.sort)) if more else None
    return await views(session, scope, rows, shape), following


def _filtered(statement: Select[Any], query: ListQuery) -> Select[Any]:
    if query.archived != "all":
        statement = statement.where(Candidate.archived.is_(query.archived == "true"))
    if query.phase is not None:
        statement = statement.where(Candidate.phase == query.phase)
    if query.updated_since is not None:
        statement = statement.where(Candidate.updated_at >= query.updated_since)
    if query.created_since is not None:
        statement = statement.where(Candidate.created_at >= query.created_since)
    return statement


def _ordered(statement: Select[Any], sort: Sort) -> Select[Any]:
    if sort == "updatedAt":  # the change sequence: a syncing client never misses a change (§1.3)
        return statement.order_by(Candidate.change_seq)
    if sort == "-createdAt":
        return statement.order_by(Candidate.created_at.desc(), Candidate.id.desc())
    return statement.order_by(Candidate.created_at, Candidate.id)


def _position(candidate: Candidate, sort: Sort) -> list[Any]:
    if sort == "updatedAt":
        return [candidate.change_seq]
    return [to_rfc3339(candidate.created_at), candidate.id]


def _after(statement: Select[Any], sort: Sort, position: list[Any]) -> Select[Any]:
    try:
        if sort == "updatedAt":
            (change,) = position
            return statement.where(Candidate.change_seq > int(change))
        created, candidate_id = position
        at = literal(datetime.fromisoformat(str(created).replace("Z", "+00:00")), UtcDateTime())
        key = tuple_(Candidate.created_at, Candidate.id)
        mark = tuple_(at, literal(str(candidate_id)))
        return statement.where(key < mark if sort == "-createdAt" else key > mark)
    except (ValueError, TypeError):
        raise InvalidCursor() from None


async def find(
    session: AsyncSession, scope: Scope, email: str | None, phone: str | None, archived: Archived
) -> list[dict[str, Any]]:
    """Email wins when both are given; oldest first."""
    if not email and not phone:
        raise BadRequest("Give an email or a phone number")
    statement = scoped(select(Candidate), Candidate, scope)
    # Ordered by the matched column and created_at only — exactly its index — so the planner uses
    # that index for the order too; SQLite without statistics would otherwise walk the whole region
    # in created_at order. (Two matches created in the same millisecond keep the index's order.)
    matched: Any
    if email:
        matched = Candidate.email_key
        statement = statement.where(matched == email_key(email))
    else:
        matched = Candidate.phone_key
        statement = statement.where(matched == phone_key(str(phone)))
    if archived != "all":
        statement = statement.where(Candidate.archived.is_(archived == "true"))
    ordered = statement.order_by(matched, Candidate.created_at)
    rows = (await session.scalars(ordered.limit(100))).all()
    return await views(session, scope, rows, Shape(None, False))


async def ensure_writable(session: AsyncSession, scope: Scope, candidate_id: str) -> None:
    """A write to a candidate that neither exists nor is pending creation here → 404 at once (§3.2).

    Looked for again after the pending check: its creation may have been applied in between (the
    candidate and its mutation's end commit together), and was then in neither look.
    """
    if has_shape(candidate_id, "cand"):
        exists = scoped(select(Candidate.id), Candidate, scope).where(Candidate.id == candidate_id)
        if await session.scalar(exists):
            return
        pending = await session.scalar(
            scoped(select(Mutation.id), Mutation, scope)
            .where(
                Mutation.status.in_(UNFINISHED),
                Mutation.operation == "candidates.create",
                cast(Mutation.resource_ids, String).contains(f'"{candidate_id}"'),
            )
            .limit(1)
        )
        if pending is not None or await session.scalar(exists):
            return
    raise NotFound("Candidate not found")


async def export(session: AsyncSession, scope: Scope, candidate_id: str) -> dict[str, Any]:
    """Everything stored about one candidate (a subject access request): its properties, every
    interaction, its attachments, and the mutations that concerned it (never their payloads)."""
    candidate = await get_candidate(session, scope, candidate_id, Shape(None, False))
    interactions = await session.scalars(
        scoped(select(Interaction), Interaction, scope)
        .where(Interaction.candidate_id == candidate_id)
        .order_by(Interaction.performed_at.desc(), Interaction.id.desc())
    )
    named = f'"{candidate_id}"'
    mutations = await session.scalars(
        scoped(select(Mutation), Mutation, scope)
        .where(
            or_(
                cast(Mutation.resource_ids, String).contains(named),
                cast(Mutation.results, String).contains(named),
            )
        )
        .order_by(Mutation.seq)
    )
    return {
        "candidate": candidate,
        "interactions": [interaction_view(i) for i in interactions],
        "attachments": [
            attachment_view(a) | {"contentUrl": content_url(scope, a.id)}
            for a in (await of_candidates(session, scope, [candidate_id]))[candidate_id]
        ],
        "mutations": [mutation_view(m, None) | {"callback": None} for m in mutations],
    }
