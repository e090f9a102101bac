"""Keyset pages over time-ordered ids (contract §1.3): `pageSize` 1–100, signed `cursor`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Query
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from onderwijsregio.cursors import CursorCodec
from onderwijsregio.errors import InvalidCursor

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class PageRequest:
    page_size: int
    cursor: str | None


async def page_request(
    page_size: Annotated[int, Query(alias="pageSize", ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    cursor: Annotated[
        str | None,
        Query(description="meta.cursor of the previous page", json_schema_extra={"minLength": 1}),
    ] = None,
) -> PageRequest:
    return PageRequest(page_size, cursor)


@dataclass(frozen=True)
class Page:
    items: list[Any]
    cursor: str | None


async def page_by_id(
    session: AsyncSession,
    statement: Select[Any],
    id_column: InstrumentedAttribute[str],
    request: PageRequest,
    codec: CursorCodec,
    listing: str,
) -> Page:
    """Rows after the cursor's id in id order; one extra row tells whether another page exists."""
    if request.cursor is not None:
        position = codec.decode(listing, request.cursor)
        if len(position) != 1 or not isinstance(position[0], str):
            raise InvalidCursor()
        statement = statement.where(id_column > position[0])
    rows = list((await session.scalars(statement.order_by(id_column).limit(request.page_size + 1))).all())
    if len(rows) <= request.page_size:
        return Page(rows, None)
    rows = rows[: request.page_size]
    return Page(rows, codec.encode(listing, [getattr(rows[-1], id_column.key)]))
