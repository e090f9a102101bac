"""What a running app holds once: database sessions, the rate limiter, cursor signing, key usage."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.requests import Request

from onderwijsregio.api_keys.usage import KeyUsage
from onderwijsregio.clock import utc_now
from onderwijsregio.config import Settings
from onderwijsregio.cursors import CursorCodec
from onderwijsregio.engine.runtime import Engine
from onderwijsregio.outbound.urls import UrlPolicy
from onderwijsregio.ratelimit import RateLimiter


@dataclass
class AppContext:
    settings: Settings
    database: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]  # for reading
    write_sessions: async_sessionmaker[AsyncSession]  # for transactions that change data
    limiter: RateLimiter
    cursors: CursorCodec
    key_usage: KeyUsage
    url_policy: UrlPolicy
    engine: Engine  # the Mutation Engine: its wake-ups, and (when this process works) its tasks
    clock: Callable[[], datetime] = utc_now  # tests of time-bound rules give their own


def app_context(request: Request) -> AppContext:
    context: AppContext = request.app.state.context
    return context


async def request_context(request: Request) -> AppContext:
    """`app_context` as a dependency. Every dependency is `async def`: FastAPI runs a plain `def` one
    in a worker thread, a hop that cost more than the function itself on every request."""
    return app_context(request)
