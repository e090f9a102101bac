"""Wake-ups: a committed write wakes the workers at once, in this process and (PostgreSQL) in others;
a rolled-back one, or a savepoint released on the way, wakes nobody."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onderwijsregio.engine.wakeup import MUTATIONS_CHANNEL, Waker, wake_here_after_commit
from tests.conftest import BACKEND, Tenant
from tests.engine_helpers import accepted

Sessions = async_sessionmaker[AsyncSession]


class Rollback(Exception):
    """Leaves a transaction block, so that it rolls back."""


async def _rolled_back(write_sessions: Sessions, waker: Waker) -> None:
    async with write_sessions() as session, session.begin():
        wake_here_after_commit(session, waker)
        await session.execute(text("SELECT 1"))
        raise Rollback


async def _woken(waker: Waker, within: float) -> bool:
    started = time.monotonic()
    await waker.wait(within)
    return time.monotonic() - started < within * 0.9


async def test_a_commit_wakes_this_process_and_a_rollback_does_not(write_sessions: Sessions) -> None:
    waker = Waker()
    with pytest.raises(Rollback):
        await _rolled_back(write_sessions, waker)
    assert not await _woken(waker, 0.5), "a rolled-back transaction woke the worker"

    async with write_sessions() as session, session.begin():
        wake_here_after_commit(session, waker)
        async with session.begin_nested():
            await session.execute(text("SELECT 1"))
        assert not await _woken(waker, 0.5), "a released savepoint woke the worker"
    assert await _woken(waker, 10), "a commit did not wake the worker"
    assert not await _woken(waker, 0.5), "one commit woke the worker twice"


@pytest.mark.skipif(BACKEND != "postgresql", reason="other processes are told through PostgreSQL")
async def test_an_accepted_mutation_tells_listening_processes_at_commit(
    client: httpx.AsyncClient, tenant: Tenant, database_url: str
) -> None:
    url = make_url(database_url)
    listener = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password, database=url.database
    )
    heard: asyncio.Queue[str] = asyncio.Queue()
    try:
        await listener.add_listener(MUTATIONS_CHANNEL, lambda *args: heard.put_nowait(args[2]))
        await accepted(client, tenant, [{"value": "wake"}])
        assert await asyncio.wait_for(heard.get(), 10) == MUTATIONS_CHANNEL
    finally:
        await listener.close()
