"""Wake-ups: a committed write wakes the workers at once, in this process and (PostgreSQL) in others;
a rolled-back one wakes nobody."""

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
        await session.execute(text("SELECT 1"))
    assert await _woken(waker, 10), "a commit did not wake the worker"
    assert not await _woken(waker, 0.5), "one commit woke the worker twice"


@pytest.mark.skipif(BACKEND != "postgresql", reason="other processes are told through PostgreSQL")
async def test_an_accepted_mutation_tells_listening_processes_at_commit(
    client: httpx.AsyncClient, tenant: Tenant, database_url: str
) -> None:
    url = make_url(database_url)
    where = {"host": url.host, "port": url.port or 5432, "user": url.username, "database": url.database}
    listener, writer = await asyncpg.connect(**where), await asyncpg.connect(**where)
    heard: asyncio.Queue[str] = asyncio.Queue()
    try:
        await listener.add_listener(MUTATIONS_CHANNEL, lambda *args: heard.put_nowait(args[2]))
        rolled_back = writer.transaction()
        await rolled_back.start()
        await writer.execute(
            "INSERT INTO mutations (region_id, sandbox, id, seq, operation, status, resource_ids,"
            " succeeded_count, failed_count, attempts, created_at)"
            " VALUES ($1, false, 'mut_rolled_back', NULL, 'test.record', 'queued', '[]', 0, 0, 0, now())",
            tenant.id,
        )
        await asyncio.sleep(0.3)
        assert heard.empty(), "told before the commit"
        await rolled_back.rollback()
        await asyncio.sleep(0.5)
        assert heard.empty(), "told of an insert that was rolled back"

        await accepted(client, tenant, [{"value": "wake"}])
        assert await asyncio.wait_for(heard.get(), 10) == MUTATIONS_CHANNEL
    finally:
        await writer.close()
        await listener.close()
