"""Database engine, sessions and the shared column types for SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import orjson
from sqlalchemy import JSON, DateTime, MetaData, Table, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def table_of(model: type[Any]) -> Table:
    """A model's table, for Core statements on hot paths: a Core INSERT or upsert costs about half
    the CPU of the same statement on the ORM class."""
    return cast(Table, model.__table__)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out on both engines (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use clock.utc_now()")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JsonValue = JSON().with_variant(JSONB(), "postgresql")


# An execution option of the engine behind write sessions: on SQLite their transactions begin with
# BEGIN IMMEDIATE, taking the write lock before the first read. A deferred transaction that reads,
# then writes, could otherwise act on a snapshot another writer has already changed.
WRITE_INTENT = "onderwijsregio_write_intent"


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def make_engine(url: str, **options: Any) -> AsyncEngine:
    # JSON columns (candidate properties, mutation payloads and results) through orjson: the standard
    # library's json was a twentieth of a worker's time.
    options = {"json_serializer": _json_text, "json_deserializer": orjson.loads, **options}
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30}, **options)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    # No pre-ping: it costs a round trip on every checkout. A connection found dead on use is
    # invalidated with the whole pool (SQLAlchemy does that on a disconnect error), the request
    # answers 503 (middleware.py), and the next ones connect afresh.
    return create_async_engine(url, pool_size=10, max_overflow=10, **options)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the one writer; foreign keys are off in SQLite unless asked for.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
    # The driver would issue BEGIN only before the first write, leaving earlier reads outside the
    # transaction; _sqlite_begin issues it instead (SQLAlchemy's documented SQLite recipe).
    dbapi_connection.isolation_level = None


def _sqlite_begin(connection: Any) -> None:
    immediate = connection.get_execution_options().get(WRITE_INTENT, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def dialect_name(session: AsyncSession) -> str:
    return str(session.get_bind().dialect.name)


def make_sessionmaker(engine: AsyncEngine, *, write: bool = False) -> async_sessionmaker[AsyncSession]:
    """Sessions for reading, or (write=True) for transactions that change data.

    On PostgreSQL, reading sessions run without a transaction (autocommit): at READ COMMITTED, the
    default, every statement sees its own snapshot either way, so a BEGIN and a ROLLBACK would only
    cost two round trips per session (every request's key look-up, every read route) and change
    nothing. SQLite keeps its BEGIN, which gives a read its one snapshot there."""
    if write:
        bind = engine.execution_options(**{WRITE_INTENT: True})
    elif engine.dialect.name == "postgresql":
        bind = engine.execution_options(isolation_level="AUTOCOMMIT")
    else:
        bind = engine
    return async_sessionmaker(bind, expire_on_commit=False, autoflush=False)


# SQLSTATEs of a database that cannot serve right now: every connection exception (class 08), an
# administrator or crash shutdown and a server still starting up (57P01-03), too many connections.
_UNAVAILABLE_STATES = ("08", "57P01", "57P02", "57P03", "53300")


def database_unavailable(error: BaseException) -> bool:
    """Whether an error means the database cannot be reached at the moment (a restart, a failover),
    as opposed to a bug: the API then answers 503 `service_unavailable` instead of 500.

    Looks through the whole chain: a failed connect surfaces as the driver's own error or as a bare
    ConnectionRefusedError (SQLAlchemy's asyncpg adapter re-raises those unwrapped), a connection
    lost mid-query as a DBAPIError whose connection SQLAlchemy invalidated.
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        cause = pending.pop()
        if cause is None or id(cause) in seen:
            continue
        seen.add(id(cause))
        if isinstance(cause, ConnectionError) or (
            isinstance(cause, DBAPIError) and cause.connection_invalidated
        ):
            return True
        state = str(getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None) or "")
        if state.startswith(_UNAVAILABLE_STATES):
            return True
        original = cause.orig if isinstance(cause, DBAPIError) else None
        pending += [original, cause.__cause__, cause.__context__]
    return False
