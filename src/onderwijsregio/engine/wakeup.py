"""Wake-ups: an idle worker applies a new mutation within milliseconds, not a poll interval.

In one process an asyncio event does it; across processes on PostgreSQL, LISTEN/NOTIFY. Polling
stays as the fallback (SQLite with separate worker processes, a lost notification).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from onderwijsregio.db import dialect_name

log = logging.getLogger(__name__)

# PostgreSQL sends this one itself when a mutation is inserted (migration 0008).
MUTATIONS_CHANNEL = "onderwijsregio_mutations"
CALLBACKS_CHANNEL = "onderwijsregio_callbacks"
MAIL_CHANNEL = "onderwijsregio_mail"


class Waker:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()

    async def wait(self, at_most: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), at_most)
        self._event.clear()


async def wake_after_commit(session: AsyncSession, waker: Waker, channel: str) -> None:
    """Other processes hear of it through NOTIFY (sent at commit); this one once the commit is done."""
    if dialect_name(session) == "postgresql":
        await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": channel})
    wake_here_after_commit(session, waker)


def wake_here_after_commit(session: AsyncSession, waker: Waker) -> None:
    """This process's `waker`, once the session's transaction commits (not when a savepoint is
    released)."""
    session.sync_session.info.setdefault(_WAKERS, set()).add(waker)


_WAKERS = "onderwijsregio_wakers"


# One listener for every session, rather than one added per transaction: adding a listener cost more
# CPU than the rest of an acceptance's wake-up.
@event.listens_for(Session, "after_commit")
def _notify_wakers(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint released: the transaction goes on
        return
    for waker in session.info.pop(_WAKERS, ()):
        waker.notify()


async def listen_forever(database_url: str, wakers: dict[str, Waker]) -> None:
    """Keeps a LISTEN connection open (reconnecting after failures) and wakes the matching waker."""
    url = make_url(database_url)
    while True:
        try:
            connection = await asyncpg.connect(
                host=url.host,
                port=url.port or 5432,
                user=url.username,
                password=url.password,
                database=url.database,
            )
        except (OSError, asyncpg.PostgresError) as error:
            log.warning("LISTEN connection failed (%s); polling until it is back", type(error).__name__)
            await asyncio.sleep(2)
            continue
        closed = asyncio.Event()
        connection.add_termination_listener(lambda _connection, done=closed: done.set())
        try:
            for channel, waker in wakers.items():
                await connection.add_listener(channel, _callback(waker))
                waker.notify()  # whatever was sent while we were not listening
            await closed.wait()
        finally:
            with contextlib.suppress(Exception):
                await connection.close()


def _callback(waker: Waker) -> Any:
    def on_notification(*_args: Any) -> None:
        waker.notify()

    return on_notification
