"""Shared fixtures: a real database (SQLite file or PostgreSQL), the app in-process, fresh tenants.

ONDERWIJSREGIO_TEST_BACKEND=sqlite (default) or postgresql chooses the engine; the README's test
command runs the suite once on each. PostgreSQL uses ONDERWIJSREGIO_TEST_POSTGRES_URL (default: the
`test` database on 127.0.0.1:5432), whose public schema is reset at the start of the run.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from onderwijsregio.api_keys import service as api_key_service
from onderwijsregio.app import create_app
from onderwijsregio.config import Settings
from onderwijsregio.db import make_engine
from onderwijsregio.migrate import apply_migrations, startup_lock
from tests import engine_ops
from tests.log_scan import SCAN, is_person_route, pytest_sessionfinish, pytest_sessionstart  # noqa: F401 - the scan's hooks
from tests.scope_guard import ScopeGuard
from tests.smtp import SmtpServer
from tests.test_routes import add_test_write_route

BACKEND = os.environ.get("ONDERWIJSREGIO_TEST_BACKEND", "sqlite")
POSTGRES_URL = os.environ.get(
    "ONDERWIJSREGIO_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
API = "/api/v2"


@pytest.fixture(scope="session")
def var_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("var")


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SmtpServer]:
    """Every mail of the session app goes here (verification codes)."""
    server = SmtpServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def database_url(var_dir: Path) -> str:
    if BACKEND == "postgresql":
        return POSTGRES_URL
    assert BACKEND == "sqlite", f"unknown ONDERWIJSREGIO_TEST_BACKEND {BACKEND!r}"
    return f"sqlite+aiosqlite:///{var_dir / 'test.db'}"


async def reset_database(url: str) -> None:
    """An empty schema, then every migration: each run starts from what a fresh install has."""
    engine = make_engine(url)
    try:
        if engine.dialect.name == "postgresql":
            async with engine.begin() as connection:
                await connection.execute(text("DROP SCHEMA public CASCADE"))
                await connection.execute(text("CREATE SCHEMA public"))
        async with startup_lock(engine):
            await apply_migrations(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def settings(database_url: str, var_dir: Path, smtp_server: SmtpServer) -> Settings:
    return Settings(
        smtp_url=smtp_server.url,
        database_url=database_url,
        var_dir=var_dir,
        storage_url=f"file://{var_dir}/attachments",
        secret_key="test-secret-key-for-cursors",
        rate_limit_storage="memory://",
        env="production",
        # receivers of callbacks in tests listen on 127.0.0.1
        allow_http_urls=True,
        url_allowlist="127.0.0.1,localhost",
        # several workers, and short engine timings so stalls and leases play out within a test
        workers=4,
        engine_lease_seconds=5,
        engine_poll_seconds=0.2,
        engine_max_stall_seconds=3,
    )


@pytest.fixture(scope="session")
async def migrated(database_url: str) -> str:
    await reset_database(database_url)
    engine = make_engine(database_url)
    try:
        await engine_ops.create_tables(engine)
    finally:
        await engine.dispose()
    return database_url


@pytest.fixture(scope="session")
def scope_guard() -> ScopeGuard:
    return ScopeGuard()


@pytest.fixture(scope="session")
async def app(migrated: str, settings: Settings, scope_guard: ScopeGuard) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    add_test_write_route(application)
    async with application.router.lifespan_context(application):
        scope_guard.watch(application.state.context.database)
        yield application
    scope_guard.assert_clean()


@pytest.fixture(scope="session")
def sessions(app: FastAPI) -> async_sessionmaker[AsyncSession]:
    factory: async_sessionmaker[AsyncSession] = app.state.context.sessions
    return factory


@pytest.fixture(scope="session")
def write_sessions(app: FastAPI) -> async_sessionmaker[AsyncSession]:
    factory: async_sessionmaker[AsyncSession] = app.state.context.write_sessions
    return factory


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    hooks = {"response": [remember_exchange]}
    base = "http://testserver"
    async with httpx.AsyncClient(transport=transport, base_url=base, event_hooks=hooks) as http:
        yield http


async def remember_exchange(response: httpx.Response) -> None:
    """The people a request sent and the credentials its answer holds, for the log scan."""
    await response.aread()
    path = response.request.url.path
    sent = _json(response.request) if is_person_route(path) else None  # people go only there
    SCAN.remember_exchange(path, sent, _json(response))


def _json(message: httpx.Request | httpx.Response) -> Any:
    if not message.headers.get("content-type", "").startswith("application/json"):
        return None
    try:
        return json.loads(message.content)
    except (ValueError, httpx.RequestNotRead, httpx.ResponseNotRead):  # not JSON, or a stream
        return None


@pytest.fixture
async def admin_key(sessions: async_sessionmaker[AsyncSession]) -> str:
    """A fresh admin key per test, so one test's requests never use up another's rate limit."""
    async with sessions() as session, session.begin():
        _key, secret = await api_key_service.create_admin_key(session, "test admin")
    SCAN.remember(secret)
    return secret


@dataclass
class Tenant:
    region: dict[str, Any]
    key: str
    key_data: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.region["id"])

    def headers(self, **extra: str) -> dict[str, str]:
        return {"x-api-key": self.key, **extra}


@pytest.fixture
def make_tenant(client: httpx.AsyncClient, admin_key: str) -> Any:
    async def make(**region_fields: Any) -> Tenant:
        body = {"name": "Regio Test", **region_fields}
        created = await client.post(f"{API}/regions", json=body, headers={"x-api-key": admin_key})
        assert created.status_code == 201, created.text
        region = created.json()["data"]
        key = await client.post(
            f"{API}/api-keys",
            json={"name": "test key"},
            headers={"x-api-key": admin_key, "x-region-id": region["id"]},
        )
        assert key.status_code == 201, key.text
        return Tenant(region, key.json()["data"]["key"], key.json()["data"])

    return make


@pytest.fixture
async def tenant(make_tenant: Any) -> Tenant:
    result: Tenant = await make_tenant()
    return result


def engine_of(app: FastAPI) -> AsyncEngine:
    engine: AsyncEngine = app.state.context.database
    return engine
