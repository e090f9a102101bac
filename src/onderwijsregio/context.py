"""What a running app holds once: database sessions, the rate limiter, cursor signing, key usage."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.requests import Request

from onderwijsregio.api_keys.usage import KeyUsage
from onderwijsregio.config import Settings
from onderwijsregio.cursors import CursorCodec
from onderwijsregio.ratelimit import RateLimiter


@dataclass
class AppContext:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]  # for reading
    write_sessions: async_sessionmaker[AsyncSession]  # for transactions that change data
    limiter: RateLimiter
    cursors: CursorCodec
    key_usage: KeyUsage


def app_context(request: Request) -> AppContext:
    context: AppContext = request.app.state.context
    return context
