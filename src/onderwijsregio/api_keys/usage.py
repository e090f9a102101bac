"""`lastUsedAt` without a database write per request: uses are noted in memory and written in batches.

A key's `lastUsedAt` may therefore lag by up to one flush interval (and a killed process loses at
most that interval of notes); it never moves backwards.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from sqlalchemy import or_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onderwijsregio.api_keys.models import ApiKey
from onderwijsregio.clock import utc_now

FLUSH_INTERVAL_SECONDS = 30.0
log = logging.getLogger(__name__)


class KeyUsage:
    def __init__(self) -> None:
        self._pending: dict[str, datetime] = {}

    def note(self, key_id: str) -> None:
        self._pending[key_id] = utc_now()

    async def flush(self, sessions: async_sessionmaker[AsyncSession]) -> int:
        pending, self._pending = self._pending, {}
        if not pending:
            return 0
        try:
            async with sessions() as session, session.begin():
                for key_id, used_at in pending.items():
                    await session.execute(
                        update(ApiKey)
                        .where(
                            ApiKey.id == key_id,
                            or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < used_at),
                        )
                        .values(last_used_at=used_at)
                    )
        except BaseException:  # cancellation at shutdown included: the final flush still gets them
            for key_id, used_at in pending.items():
                self._pending.setdefault(key_id, used_at)  # keep them for the next try; newer notes win
            raise
        return len(pending)

    async def flush_forever(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_SECONDS)
            try:
                await self.flush(sessions)
            except Exception:
                log.exception("could not record key usage; will retry")
