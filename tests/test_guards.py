"""Guards over the whole code base: every route declares its access; region data is always scoped."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import onderwijsregio
from onderwijsregio.app import api_routes
from onderwijsregio.auth.dependencies import (
    AdminAccess,
    PublicAccess,
    RegionAccess,
    SessionAccess,
    route_access,
)
from onderwijsregio.db import Base
from onderwijsregio.engine.models import Mutation
from onderwijsregio.models import metadata
from onderwijsregio.scope import RegionScoped, Scope, scoped
from tests.scope_guard import ScopeGuard, region_data_tables

# The only routes anyone may call without credentials (contract §3.9).
PUBLIC_ROUTES = {("GET", "/health"), ("GET", "/health/ready"), ("GET", "/openapi.json"), ("GET", "/docs")}
# Platform routes: region keys, but the same in live and sandbox mode (contract §1).
PLATFORM_PREFIXES = ("/api/v2/regions", "/api/v2/api-keys")
# Tables of platform configuration rather than region data.
PLATFORM_TABLES = {"regions", "api_keys", "admin_overrides", "signing_secrets", "alembic_version"}
# Indexes used across regions on purpose (docs/decisions.md): work queues claimed by due time, and a
# session found by its token (which is what tells the region).
WORK_INDEXES = {
    "ix_callback_deliveries_due",
    "ix_verification_requests_due",
    "ix_webhook_messages_due",
    "ix_candidate_sessions_token_hash",
}


def test_every_route_declares_its_access(app: FastAPI) -> None:
    routes = api_routes(app)
    assert len(routes) >= 15
    undeclared, public = [], set()
    for route in routes:
        access = route_access(route)
        for method in route.methods or ():
            if access is None:
                undeclared.append(f"{method} {route.path}")
            elif isinstance(access, PublicAccess):
                public.add((method, route.path))
    assert not undeclared, f"routes without an access declaration: {undeclared}"
    assert public == PUBLIC_ROUTES


def test_admin_and_platform_routes_are_declared_as_such(app: FastAPI) -> None:
    for route in api_routes(app):
        access = route_access(route)
        if route.path.startswith(("/api/v2/admin/", "/api/v2/regions/{")) or route.path == "/api/v2/regions":
            assert isinstance(access, AdminAccess), route.path
        elif route.path.startswith(PLATFORM_PREFIXES):
            assert isinstance(access, RegionAccess), route.path
            assert access.platform, f"{route.path} is platform configuration; it must not be sandboxed"
        elif route.path.startswith("/api/v2/auth/candidates/session/") or route.path.endswith("/session"):
            assert isinstance(access, SessionAccess), route.path
        elif route.path.startswith("/api/v2/"):
            assert isinstance(access, RegionAccess), route.path
            assert not access.platform, route.path


def test_openapi_marks_every_operation_with_security(app: FastAPI) -> None:
    document = app.openapi()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert "security" in operation, f"{method.upper()} {path}"
            is_public = (method.upper(), path) in PUBLIC_ROUTES
            assert (operation["security"] == []) == is_public, f"{method.upper()} {path}"
            assert operation.get("summary"), f"{method.upper()} {path} has no summary"


def test_region_data_tables_lead_keys_and_indexes_with_the_scope() -> None:
    region_tables = set(region_data_tables())
    assert "mutations" in region_tables
    for table in metadata.sorted_tables:
        if table.name in PLATFORM_TABLES:
            continue
        assert table.name in region_tables, f"{table.name}: first columns must be region_id, sandbox"
        assert [c.name for c in table.primary_key.columns][:2] == ["region_id", "sandbox"], table.name
        for index in table.indexes:
            if index.name in WORK_INDEXES:
                continue
            assert [c.name for c in index.columns][:2] == ["region_id", "sandbox"], index.name


async def test_scope_guard_catches_an_unscoped_query(
    sessions: async_sessionmaker[AsyncSession], scope_guard: ScopeGuard
) -> None:
    """The run-time guard is real: a query on region data without the scope fails the suite."""
    async with sessions() as session:
        await session.execute(
            scoped(select(Mutation), Mutation, Scope("reg_01ZZZZZZZZZZZZZZZZZZZZZZZZ", True))
        )
        with pytest.raises(AssertionError, match="unscoped query on region data"):
            await session.execute(select(Mutation).where(Mutation.status == "guard-probe"))
    probes = [
        v
        for v in scope_guard.violations
        if "guard-probe" in v or "mutations.status = ?" in v or "mutations.status = $1" in v
    ]
    assert probes, scope_guard.violations
    for probe in probes:  # these were on purpose
        scope_guard.violations.remove(probe)


def region_scoped_models() -> set[str]:
    return {
        mapper.class_.__name__ for mapper in Base.registry.mappers if issubclass(mapper.class_, RegionScoped)
    }


def _unscoped_queries(source: str, models: set[str]) -> list[int]:
    """Lines where select/update/delete names a region-data model without scoped() or cross_region=True."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("select", "update", "delete")
        ):
            continue
        named = {n.id for arg in node.args for n in ast.walk(arg) if isinstance(n, ast.Name)}
        if named & models and not _is_scoped(node, parents):
            found.append(node.lineno)
    return found


def _is_scoped(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id in (
                "scoped",
                "scoped_by_parameters",
                "region_wide",
            ):
                return True
            if (
                isinstance(node.func, ast.Attribute)
                and node.func.attr == "execution_options"
                and any(
                    k.arg == "cross_region" and isinstance(k.value, ast.Constant) and k.value.value is True
                    for k in node.keywords
                )
            ):
                return True
    return False


def test_every_query_on_region_data_goes_through_the_scope() -> None:
    """Static: every select/update/delete of a region-data model in the code base is scoped()."""
    models = region_scoped_models()
    assert "Mutation" in models
    package = Path(onderwijsregio.__file__).parent
    offenders = {
        str(path.relative_to(package)): lines
        for path in package.rglob("*.py")
        if (lines := _unscoped_queries(path.read_text(), models))
    }
    assert not offenders, f"unscoped queries on region data (file: lines): {offenders}"


def test_the_static_check_finds_an_unscoped_query() -> None:
    sample = (
        "a = select(Mutation).where(Mutation.id == x)\n"
        "b = scoped(select(Mutation), Mutation, scope)\n"
        "c = select(Mutation.id).execution_options(cross_region=True)\n"
        "d = update(Mutation).values(status='x')\n"
        "e = scoped_by_parameters(select(Mutation), Mutation).where(Mutation.id == bindparam('i'))\n"
    )
    assert _unscoped_queries(sample, {"Mutation"}) == [1, 4]
