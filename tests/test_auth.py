"""Authentication and authorisation (contract §1.2)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onderwijsregio.api_keys import tokens
from onderwijsregio.api_keys.models import ApiKey
from onderwijsregio.auth.models import AdminOverride
from tests.conftest import API, Tenant
from tests.test_envelope import assert_error


def without_request_id(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    body["meta"].pop("requestId")
    return body


async def test_every_credential_failure_gets_the_same_401(
    client: httpx.AsyncClient, tenant: Tenant, sessions: async_sessionmaker[AsyncSession]
) -> None:
    expired = await client.post(f"{API}/api-keys", json={"name": "soon expired"}, headers=tenant.headers())
    revoked = await client.post(f"{API}/api-keys", json={"name": "revoked"}, headers=tenant.headers())
    async with sessions() as session, session.begin():
        await session.execute(
            update(ApiKey)
            .where(ApiKey.id == expired.json()["data"]["id"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    await client.delete(f"{API}/api-keys/{revoked.json()['data']['id']}", headers=tenant.headers())
    credentials: list[dict[str, str]] = [
        {},
        {"x-api-key": "not-a-key"},
        {"x-api-key": tenant.key[:-1] + ("A" if tenant.key[-1] != "A" else "B")},  # checksum broken
        {"x-api-key": tokens.generate_key()},  # well formed, unknown
        {"x-api-key": expired.json()["data"]["key"]},
        {"x-api-key": revoked.json()["data"]["key"]},
    ]
    bodies = []
    for headers in credentials:
        response = await client.get(f"{API}/regions/me", headers=headers)
        assert_error(response, 401, "unauthorized")
        bodies.append(without_request_id(response))
    assert all(body == bodies[0] for body in bodies), bodies
    # The deprecated header only adds its deprecation warning, whatever the key.
    legacy = await client.get(f"{API}/regions/me", headers={"api-key": "oreg_nonsense"})
    legacy_body = without_request_id(legacy)
    assert legacy_body["meta"].pop("warnings") == ["The api-key header is deprecated; use x-api-key."]
    assert legacy_body == bodies[0]


async def test_key_in_query_string_is_refused(client: httpx.AsyncClient, tenant: Tenant) -> None:
    for name in ("api-key", "x-api-key", "apiKey"):
        response = await client.get(f"{API}/regions/me", params={name: tenant.key})
        assert_error(response, 401, "unauthorized")
    # even next to a valid header: a key in a URL is a leak the client must fix
    response = await client.get(f"{API}/regions/me", params={"api-key": tenant.key}, headers=tenant.headers())
    assert_error(response, 401, "unauthorized")


async def test_deprecated_api_key_header_still_works_and_warns(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await client.get(f"{API}/regions/me", headers={"api-key": tenant.key})
    assert response.status_code == 200
    assert response.headers["deprecation"] == "true"
    assert response.json()["meta"]["warnings"] == ["The api-key header is deprecated; use x-api-key."]
    modern = await client.get(f"{API}/regions/me", headers=tenant.headers())
    assert "deprecation" not in modern.headers and "warnings" not in modern.json()["meta"]


async def test_region_key_on_admin_routes_is_403(client: httpx.AsyncClient, tenant: Tenant) -> None:
    for method, path in (
        ("GET", "/regions"),
        ("POST", "/regions"),
        ("GET", f"/regions/{tenant.id}"),
        ("PATCH", f"/regions/{tenant.id}"),
        ("GET", "/admin/api-keys"),
        ("POST", "/admin/api-keys"),
        ("DELETE", f"/admin/api-keys/{tenant.key_data['id']}"),
        ("GET", "/admin/queue"),
    ):
        body = {"name": "x"} if method in ("POST", "PATCH") else None
        response = await client.request(method, f"{API}{path}", json=body, headers=tenant.headers())
        assert_error(response, 403, "forbidden")


async def test_admin_key_needs_x_region_id_on_region_routes(
    client: httpx.AsyncClient, admin_key: str
) -> None:
    for path in ("/regions/me", "/api-keys"):
        response = await client.get(f"{API}{path}", headers={"x-api-key": admin_key})
        error = assert_error(response, 400, "bad_request")
        assert "x-region-id" in response.json()["message"], error


async def test_admin_override_acts_for_the_region_and_is_audited(
    client: httpx.AsyncClient, admin_key: str, tenant: Tenant, sessions: async_sessionmaker[AsyncSession]
) -> None:
    headers = {"x-api-key": admin_key, "x-region-id": tenant.id}
    response = await client.get(f"{API}/regions/me", headers=headers)
    assert response.status_code == 200 and response.json()["data"]["id"] == tenant.id
    async with sessions() as session:
        records = (
            await session.scalars(select(AdminOverride).where(AdminOverride.region_id == tenant.id))
        ).all()
    routes = [(r.method, r.route) for r in records]
    assert ("GET", "/api/v2/regions/me") in routes
    assert ("POST", "/api/v2/api-keys") in routes  # the tenant fixture's own key creation
    assert all(r.key_id.startswith("key_") for r in records)


async def test_admin_override_with_unknown_region_is_404(client: httpx.AsyncClient, admin_key: str) -> None:
    for region_id in ("reg_01ZZZZZZZZZZZZZZZZZZZZZZZZ", "not-a-region"):
        response = await client.get(
            f"{API}/regions/me", headers={"x-api-key": admin_key, "x-region-id": region_id}
        )
        assert_error(response, 404, "not_found")


async def test_region_key_with_another_regions_header_is_403(
    client: httpx.AsyncClient, make_tenant: Any
) -> None:
    first, second = await make_tenant(), await make_tenant()
    response = await client.get(f"{API}/regions/me", headers=first.headers(**{"x-region-id": second.id}))
    assert_error(response, 403, "forbidden")
    own = await client.get(f"{API}/regions/me", headers=first.headers(**{"x-region-id": first.id}))
    assert own.status_code == 200 and own.json()["data"]["id"] == first.id


async def test_manage_permission_guards_key_management(client: httpx.AsyncClient, tenant: Tenant) -> None:
    created = await client.post(
        f"{API}/api-keys", json={"name": "website form", "permissions": ["write"]}, headers=tenant.headers()
    )
    assert created.status_code == 201 and created.json()["data"]["permissions"] == ["write"]
    form_key = {"x-api-key": created.json()["data"]["key"]}
    assert_error(await client.get(f"{API}/api-keys", headers=form_key), 403, "forbidden")
    assert_error(await client.post(f"{API}/api-keys", json={"name": "x"}, headers=form_key), 403, "forbidden")
    assert_error(
        await client.delete(f"{API}/api-keys/{tenant.key_data['id']}", headers=form_key), 403, "forbidden"
    )
    # any valid key may read its own region
    assert (await client.get(f"{API}/regions/me", headers=form_key)).status_code == 200


async def test_keys_never_get_more_than_their_creator(client: httpx.AsyncClient, tenant: Tenant) -> None:
    manager = await client.post(
        f"{API}/api-keys",
        json={"name": "manager", "permissions": ["manage", "read"]},
        headers=tenant.headers(),
    )
    manager_key = {"x-api-key": manager.json()["data"]["key"]}
    escalating = await client.post(
        f"{API}/api-keys", json={"name": "more", "permissions": ["write"]}, headers=manager_key
    )
    assert_error(escalating, 403, "forbidden")
    inherited = await client.post(f"{API}/api-keys", json={"name": "inherits"}, headers=manager_key)
    assert inherited.json()["data"]["permissions"] == ["read", "manage"]


async def test_key_creation_is_validated(client: httpx.AsyncClient, tenant: Tenant) -> None:
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    for body in (
        {},
        {"name": ""},
        {"name": "x", "permissions": ["admin"]},
        {"name": "x", "permissions": []},
        {"name": "x", "expiresAt": past},
        {"name": "x", "expiresAt": "2099-01-01T00:00:00"},  # no offset
        {"name": "x", "scope": "admin"},
        {"name": 5},
    ):
        response = await client.post(f"{API}/api-keys", json=body, headers=tenant.headers())
        assert_error(response, 422, "validation_failed")


async def test_key_format_and_one_time_secret(
    client: httpx.AsyncClient, tenant: Tenant, sessions: async_sessionmaker[AsyncSession]
) -> None:
    expires = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    created = await client.post(
        f"{API}/api-keys",
        json={"name": "partner", "expiresAt": expires.isoformat()},
        headers=tenant.headers(),
    )
    data = created.json()["data"]
    assert tokens.is_well_formed(data["key"]) and len(data["key"]) == len("oreg_") + 49
    assert data["key"].startswith(data["prefix"]) and data["scope"] == "region"
    assert data["expiresAt"] == expires.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    async with sessions() as session:
        stored = await session.get(ApiKey, data["id"])
    assert stored is not None and stored.secret_hash == tokens.hash_key(data["key"])
    assert data["key"] not in repr(stored.__dict__)
    listed = await client.get(f"{API}/api-keys", headers=tenant.headers())
    assert data["key"] not in listed.text and "secretHash" not in listed.text


async def test_revocation_is_effective_on_the_next_request(client: httpx.AsyncClient, tenant: Tenant) -> None:
    created = (await client.post(f"{API}/api-keys", json={"name": "temp"}, headers=tenant.headers())).json()[
        "data"
    ]
    temp = {"x-api-key": created["key"]}
    assert (await client.get(f"{API}/regions/me", headers=temp)).status_code == 200
    revoked = await client.delete(f"{API}/api-keys/{created['id']}", headers=tenant.headers())
    assert revoked.status_code == 200 and revoked.json()["data"]["revokedAt"].endswith("Z")
    assert_error(await client.get(f"{API}/regions/me", headers=temp), 401, "unauthorized")


async def test_keys_of_other_regions_and_admin_keys_are_out_of_reach(
    client: httpx.AsyncClient, make_tenant: Any, admin_key: str
) -> None:
    first, second = await make_tenant(), await make_tenant()
    assert_error(
        await client.delete(f"{API}/api-keys/{second.key_data['id']}", headers=first.headers()),
        404,
        "not_found",
    )
    admin_keys = await client.get(
        f"{API}/admin/api-keys", params={"pageSize": 100}, headers={"x-api-key": admin_key}
    )
    some_admin_key = admin_keys.json()["data"][0]["id"]
    assert_error(
        await client.delete(f"{API}/api-keys/{some_admin_key}", headers=first.headers()), 404, "not_found"
    )
    listed = await client.get(f"{API}/api-keys", headers=first.headers())
    assert {k["regionId"] for k in listed.json()["data"]} == {first.id}
    assert (await client.get(f"{API}/regions/me", headers=second.headers())).status_code == 200


async def test_admin_keys_can_be_created_listed_and_revoked(
    client: httpx.AsyncClient, admin_key: str
) -> None:
    admin = {"x-api-key": admin_key}
    created = await client.post(f"{API}/admin/api-keys", json={"name": "second admin"}, headers=admin)
    data = created.json()["data"]
    assert created.status_code == 201 and data["scope"] == "admin" and data["regionId"] is None
    assert data["permissions"] == ["read", "write", "manage"]
    second = {"x-api-key": data["key"]}
    assert (await client.get(f"{API}/regions", headers=second)).status_code == 200
    assert_error(
        await client.post(
            f"{API}/admin/api-keys", json={"name": "x", "permissions": ["read"]}, headers=admin
        ),
        422,
        "validation_failed",
    )
    assert (await client.delete(f"{API}/admin/api-keys/{data['id']}", headers=admin)).status_code == 200
    assert_error(await client.get(f"{API}/regions", headers=second), 401, "unauthorized")


async def test_last_used_at_is_recorded_without_a_write_per_request(
    app: Any, client: httpx.AsyncClient, tenant: Tenant, sessions: async_sessionmaker[AsyncSession]
) -> None:
    assert tenant.key_data["lastUsedAt"] is None
    await client.get(f"{API}/regions/me", headers=tenant.headers())
    async with sessions() as session:
        before_flush = await session.get(ApiKey, tenant.key_data["id"])
    assert before_flush is not None and before_flush.last_used_at is None
    await app.state.context.key_usage.flush(sessions)
    listed = await client.get(f"{API}/api-keys", headers=tenant.headers())
    mine = next(k for k in listed.json()["data"] if k["id"] == tenant.key_data["id"])
    assert mine["lastUsedAt"] is not None and mine["lastUsedAt"].endswith("Z")


async def test_keys_never_outlive_their_creator(client: httpx.AsyncClient, tenant: Tenant) -> None:
    soon = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    creator = await client.post(
        f"{API}/api-keys",
        json={"name": "temporary manager", "expiresAt": soon.isoformat()},
        headers=tenant.headers(),
    )
    creator_key = {"x-api-key": creator.json()["data"]["key"]}
    inherited = await client.post(f"{API}/api-keys", json={"name": "child"}, headers=creator_key)
    assert inherited.json()["data"]["expiresAt"] == creator.json()["data"]["expiresAt"]
    later = (soon + timedelta(days=1)).isoformat()
    outliving = await client.post(
        f"{API}/api-keys", json={"name": "child", "expiresAt": later}, headers=creator_key
    )
    assert_error(outliving, 403, "forbidden")
    earlier = (soon - timedelta(days=1)).isoformat()
    shorter = await client.post(
        f"{API}/api-keys", json={"name": "child", "expiresAt": earlier}, headers=creator_key
    )
    assert shorter.status_code == 201


async def test_a_key_stops_working_when_it_expires(client: httpx.AsyncClient, tenant: Tenant) -> None:
    expires = datetime.now(UTC) + timedelta(seconds=1.5)
    created = await client.post(
        f"{API}/api-keys", json={"name": "brief", "expiresAt": expires.isoformat()}, headers=tenant.headers()
    )
    brief = {"x-api-key": created.json()["data"]["key"]}
    assert (await client.get(f"{API}/regions/me", headers=brief)).status_code == 200
    await asyncio.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.1)
    assert_error(await client.get(f"{API}/regions/me", headers=brief), 401, "unauthorized")


async def test_region_key_may_name_its_own_region_on_key_routes(
    client: httpx.AsyncClient, make_tenant: Any
) -> None:
    first, second = await make_tenant(), await make_tenant()
    own = await client.post(
        f"{API}/api-keys", json={"name": "x"}, headers=first.headers(**{"x-region-id": first.id})
    )
    assert own.status_code == 201
    assert own.json()["data"]["regionId"] == first.id
    foreign = await client.post(
        f"{API}/api-keys", json={"name": "x"}, headers=first.headers(**{"x-region-id": second.id})
    )
    assert_error(foreign, 403, "forbidden")
    listed = await client.get(f"{API}/api-keys", headers=first.headers(**{"x-region-id": second.id}))
    assert_error(listed, 403, "forbidden")


async def test_key_use_is_written_at_shutdown(settings: Any, tenant: Tenant, sessions: Any) -> None:
    from onderwijsregio.app import create_app

    app = create_app(settings, run_workers=False)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
    async with app.router.lifespan_context(app), http:
        assert (await http.get(f"{API}/regions/me", headers=tenant.headers())).status_code == 200
    async with sessions() as session:
        stored = await session.get(ApiKey, tenant.key_data["id"])
    assert stored is not None
    assert stored.last_used_at is not None
