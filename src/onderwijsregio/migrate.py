"""Applying migrations under a lock, so many processes may start at once (contract §4).

PostgreSQL: a session advisory lock. SQLite: an exclusive file lock beside the database file.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

# Any fixed 64-bit number, the same in every process: "onderwijsregio migrations".
_ADVISORY_LOCK = 0x6F726567_6D696772


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", "onderwijsregio:migrations")
    return config


def _upgrade(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


@contextlib.asynccontextmanager
async def startup_lock(engine: AsyncEngine) -> AsyncIterator[None]:
    """Held while one process migrates (and sets up its first admin key); others wait their turn."""
    if engine.dialect.name == "sqlite":
        with _file_lock(_sqlite_lock_path(engine)):
            yield
        return
    async with engine.connect() as lock_connection:
        await lock_connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _ADVISORY_LOCK})
        try:
            yield
        finally:
            await lock_connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _ADVISORY_LOCK})


async def apply_migrations(engine: AsyncEngine) -> None:
    """Upgrades to the newest revision; the caller holds `startup_lock`."""
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade)


def _sqlite_lock_path(engine: AsyncEngine) -> Path:
    database = make_url(str(engine.url)).database or ""
    path = Path(database).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(path.name + ".migrate-lock")


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
