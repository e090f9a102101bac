"""Request-wide dependencies: the request owns its transaction (services never commit)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from onderwijsregio.context import app_context

READING_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def db_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the route returns, rolled back when it raises."""
    context = app_context(request)
    factory = context.sessions if request.method in READING_METHODS else context.write_sessions
    async with factory() as session, session.begin():
        yield session


async def write_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A transaction that may change data, for the rare reading route that writes (a first-use default)."""
    async with app_context(request).write_sessions() as session, session.begin():
        yield session


# `scope="function"`: the transaction ends (commits) before the answer is sent, so a client that
# reads right after a 200/201 sees what it wrote.
DbSession = Annotated[AsyncSession, Depends(db_session, scope="function")]
WriteDbSession = Annotated[AsyncSession, Depends(write_session, scope="function")]
