"""Jobs on a clock: the hourly clean-ups (idempotency records, and what the domains register, such
as unused stored files) and the daily sandbox wipe (contract §2.4, §3.8).

Any number of processes may run them: the clean-up is idempotent, and the daily wipe is accepted
with an idempotency key naming the day, so a region gets one wipe a day however many run it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onderwijsregio.clock import utc_now
from onderwijsregio.engine.accept import Submission, WriteOptions, accept, forget_expired_keys
from onderwijsregio.engine.models import Mutation, MutationCounter
from onderwijsregio.engine.operations import cleanup_jobs
from onderwijsregio.engine.wakeup import Waker
from onderwijsregio.scope import Scope, scoped
from onderwijsregio.storage.files import FileStore

log = logging.getLogger(__name__)
AMSTERDAM = ZoneInfo("Europe/Amsterdam")
SANDBOX_RESET = "sandbox.reset"
# The daily wipe is not refused for a full queue: it shrinks what the queue holds.
UNLIMITED = 2**62


def next_wipe(after: datetime, at: time) -> datetime:
    """The first moment after `after` that is `at` o'clock in Amsterdam, in UTC."""
    local = after.astimezone(AMSTERDAM)
    candidate = datetime.combine(local.date(), at, AMSTERDAM)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), at, AMSTERDAM)
    return candidate.astimezone(after.tzinfo)


@dataclass
class Maintenance:
    write_sessions: async_sessionmaker[AsyncSession]
    waker: Waker
    wipe_at: time
    files: FileStore
    cleanup_every: timedelta = timedelta(hours=1)

    async def run_forever(self) -> None:
        wipe = next_wipe(utc_now(), self.wipe_at)
        cleanup = utc_now()
        while True:
            now = utc_now()
            try:
                if now >= cleanup:
                    await self.clean_up()
                    cleanup = now + self.cleanup_every
                if now >= wipe:
                    await self.wipe_sandboxes(wipe.astimezone(AMSTERDAM).date())
                    wipe = next_wipe(now, self.wipe_at)
            except Exception as error:
                log.warning("maintenance job failed: %s; retrying later", type(error).__name__)
            await asyncio.sleep(
                max(1.0, min((cleanup - now).total_seconds(), (wipe - now).total_seconds(), 60))
            )

    async def clean_up(self) -> None:
        await self.forget_expired_keys()
        for job in cleanup_jobs():
            try:
                await job(self.write_sessions, self.files)
            except Exception as error:  # one job's trouble must not stop the others
                log.warning("clean-up job failed: %s", type(error).__name__)

    async def forget_expired_keys(self) -> int:
        forgotten = 0
        for scope in await self._lanes(sandbox=None):
            async with self.write_sessions() as session, session.begin():
                forgotten += await forget_expired_keys(session, scope)
        return forgotten

    async def wipe_sandboxes(self, day: date) -> int:
        """Accepts a sandbox.reset for every region whose sandbox changed since its last reset."""
        wiped = 0
        for scope in await self._lanes(sandbox=True):
            try:
                wiped += await self._wipe(scope, day)
            except Exception as error:  # one region's trouble must not keep the others unwiped
                log.warning("daily wipe of a sandbox failed: %s", type(error).__name__)
        return wiped

    async def _wipe(self, scope: Scope, day: date) -> int:
        async with self.write_sessions() as session, session.begin():
            if await _last_operation(session, scope) in (None, SANDBOX_RESET):
                return 0
            # A key no client can send (it holds spaces): one wipe a day, however many processes try.
            key = f"daily sandbox reset {day.isoformat()}"
            acceptance = await accept(
                session,
                scope,
                Submission(SANDBOX_RESET, [{}], []),
                WriteOptions(idempotency_key=key),
                fingerprint=key,
                max_queued=UNLIMITED,
                waker=self.waker,
            )
            return 0 if acceptance.replayed else 1

    async def _lanes(self, sandbox: bool | None) -> list[Scope]:
        async with self.write_sessions() as session:
            modes = (False, True) if sandbox is None else (sandbox,)
            rows = await session.execute(
                select(MutationCounter.region_id, MutationCounter.sandbox)
                .where(MutationCounter.sandbox.in_(modes))
                .execution_options(cross_region=True)  # every region's lanes
            )
            return [Scope(region_id, mode) for region_id, mode in rows]


async def _last_operation(session: AsyncSession, scope: Scope) -> str | None:
    operation: str | None = await session.scalar(
        scoped(select(Mutation.operation), Mutation, scope).order_by(Mutation.seq.desc()).limit(1)
    )
    return operation
