"""Regions and their settings (contract §3.6, §1.3 paging)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.conftest import API, Tenant
from tests.test_envelope import assert_error

FIELD = {"key": "favoriteSubject", "label": "Favoriete vak", "type": "string", "required": False}


def admin(key: str) -> dict[str, str]:
    return {"x-api-key": key}


async def test_create_region_with_defaults(client: httpx.AsyncClient, admin_key: str) -> None:
    response = await client.post(
        f"{API}/regions", json={"name": "  Regio Utrecht  "}, headers=admin(admin_key)
    )
    data = response.json()["data"]
    assert response.status_code == 201
    assert data["name"] == "Regio Utrecht"
    assert data["customFields"] == [] and data["allowedOrigins"] == []
    assert data["rateLimit"] == {
        "requestsPerSecond": 50,
        "burst": 100,
        "keyRequestsPerSecond": 20,
        "keyBurst": 40,
    }
    assert data["maxQueuedMutations"] == 100000
    assert data["selfServiceFields"] == ["phone", "privacyConsent", "motivation"]
    assert data["createdAt"] == data["updatedAt"]


async def test_create_region_with_everything(client: httpx.AsyncClient, admin_key: str) -> None:
    body = {
        "name": "Regio Noord",
        "customFields": [
            FIELD,
            {
                "key": "schoolType",
                "label": "Schooltype",
                "type": "select",
                "options": ["po", "vo"],
                "required": True,
                "description": "Voorkeur",
            },
        ],
        "rateLimit": {"requestsPerSecond": 5, "burst": 10},
        "maxQueuedMutations": 500,
        "selfServiceFields": ["phone", "city"],
        "allowedOrigins": ["https://werkeninhetonderwijs.example.nl"],
    }
    data = (await client.post(f"{API}/regions", json=body, headers=admin(admin_key))).json()["data"]
    assert data["customFields"] == body["customFields"]
    assert data["rateLimit"] == {
        "requestsPerSecond": 5,
        "burst": 10,
        "keyRequestsPerSecond": 20,
        "keyBurst": 40,
    }
    assert data["maxQueuedMutations"] == 500
    assert data["selfServiceFields"] == ["phone", "city"]
    assert data["allowedOrigins"] == ["https://werkeninhetonderwijs.example.nl"]


async def test_invalid_region_bodies_are_422(client: httpx.AsyncClient, admin_key: str) -> None:
    def field(**changes: Any) -> dict[str, Any]:
        return {"name": "Regio", "customFields": [{**FIELD, **changes}]}

    cases: dict[str, Any] = {
        "no name": {},
        "empty name": {"name": " "},
        "name too long": {"name": "x" * 201},
        "unknown property": {"name": "Regio", "colour": "blue"},
        "read-only property": {"name": "Regio", "id": "reg_01ZZZZZZZZZZZZZZZZZZZZZZZZ"},
        "key clashes with shared property": field(key="email"),
        "key clashes with read-only property": field(key="createdAt"),
        "key not camelCase": field(key="favoriete vak"),
        "key starts upper case": field(key="Subject"),
        "unknown type": field(type="shoe"),
        "select without options": field(type="select"),
        "options on a string": field(options=["a"]),
        "repeated options": field(type="multiSelect", options=["a", "a"]),
        "required as a string": field(required="true"),
        "duplicate keys": {"name": "Regio", "customFields": [FIELD, FIELD]},
        "burst below rate": {"name": "Regio", "rateLimit": {"requestsPerSecond": 10, "burst": 5}},
        "rate as a string": {"name": "Regio", "rateLimit": {"requestsPerSecond": "10"}},
        "zero queue": {"name": "Regio", "maxQueuedMutations": 0},
        "self-service email": {"name": "Regio", "selfServiceFields": ["email"]},
        "origin with a path": {"name": "Regio", "allowedOrigins": ["https://example.nl/form"]},
        "origin not a URL": {"name": "Regio", "allowedOrigins": ["example.nl"]},
    }
    failures = []
    for label, body in cases.items():
        response = await client.post(f"{API}/regions", json=body, headers=admin(admin_key))
        if response.status_code != 422 or response.json()["error"]["code"] != "validation_failed":
            failures.append(f"{label}: {response.status_code} {response.text[:200]}")
    assert not failures, failures


async def test_patch_changes_only_what_is_given(
    client: httpx.AsyncClient, admin_key: str, tenant: Tenant
) -> None:
    url = f"{API}/regions/{tenant.id}"
    patched = await client.patch(
        url, json={"rateLimit": {"keyBurst": 80}, "customFields": [FIELD]}, headers=admin(admin_key)
    )
    data = patched.json()["data"]
    assert patched.status_code == 200
    assert data["name"] == tenant.region["name"]
    assert data["rateLimit"]["keyBurst"] == 80 and data["rateLimit"]["burst"] == 100
    assert data["customFields"] == [FIELD]
    assert data["updatedAt"] >= tenant.region["updatedAt"]
    cleared = await client.patch(url, json={"customFields": []}, headers=admin(admin_key))
    assert cleared.json()["data"]["customFields"] == []
    for body in (
        {},
        {"name": None},
        {"maxQueuedMutations": -1},
        {"rateLimit": {"keyRequestsPerSecond": 500}},
    ):
        assert_error(await client.patch(url, json=body, headers=admin(admin_key)), 422, "validation_failed")
    reread = await client.get(url, headers=admin(admin_key))
    assert (
        reread.json()["data"]["rateLimit"]["keyRequestsPerSecond"] == 20
    )  # the refused change left no trace


async def test_region_me_sees_admin_changes_at_once(
    client: httpx.AsyncClient, admin_key: str, tenant: Tenant
) -> None:
    await client.patch(
        f"{API}/regions/{tenant.id}", json={"name": "Regio Hernoemd"}, headers=admin(admin_key)
    )
    mine = await client.get(f"{API}/regions/me", headers=tenant.headers())
    assert mine.json()["data"]["name"] == "Regio Hernoemd"


async def test_unknown_or_malformed_region_is_404(client: httpx.AsyncClient, admin_key: str) -> None:
    for region_id in ("reg_01ZZZZZZZZZZZZZZZZZZZZZZZZ", "reg_x", "cand_01ZZZZZZZZZZZZZZZZZZZZZZZZ"):
        assert_error(
            await client.get(f"{API}/regions/{region_id}", headers=admin(admin_key)), 404, "not_found"
        )
        response = await client.patch(
            f"{API}/regions/{region_id}", json={"name": "x"}, headers=admin(admin_key)
        )
        assert_error(response, 404, "not_found")


async def test_region_list_pages_with_signed_cursors(client: httpx.AsyncClient, admin_key: str) -> None:
    created = []
    for number in range(5):
        response = await client.post(
            f"{API}/regions", json={"name": f"Paged {number}"}, headers=admin(admin_key)
        )
        created.append(response.json()["data"]["id"])
    seen: list[str] = []
    params: dict[str, Any] = {"pageSize": 7}
    for _ in range(1000):
        response = await client.get(f"{API}/regions", params=params, headers=admin(admin_key))
        if response.status_code == 429:  # as a client would: wait, then ask again
            await asyncio.sleep(float(response.headers["retry-after"]))
            continue
        page = response.json()
        assert len(page["data"]) <= 7 and page["meta"]["pageSize"] == 7
        seen += [region["id"] for region in page["data"]]
        if page["meta"]["cursor"] is None:
            break
        params["cursor"] = page["meta"]["cursor"]
    assert len(seen) == len(set(seen)), "a region appeared twice"
    assert seen == sorted(seen)
    assert set(created) <= set(seen)


async def test_tampered_or_foreign_cursors_are_400(
    client: httpx.AsyncClient, admin_key: str, tenant: Tenant
) -> None:
    await client.post(f"{API}/regions", json={"name": "One more"}, headers=admin(admin_key))
    first = (await client.get(f"{API}/regions", params={"pageSize": 1}, headers=admin(admin_key))).json()
    cursor = first["meta"]["cursor"]
    payload, _, signature = cursor.partition(".")
    tampered = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + signature
    for bad in ("definitely-not-a-cursor", tampered, cursor + "x", "." + signature):
        response = await client.get(f"{API}/regions", params={"cursor": bad}, headers=admin(admin_key))
        assert_error(response, 400, "invalid_cursor")
    # a region-list cursor means nothing to the key list
    response = await client.get(f"{API}/api-keys", params={"cursor": cursor}, headers=tenant.headers())
    assert_error(response, 400, "invalid_cursor")


async def test_odd_cursors_are_400_not_500(client: httpx.AsyncClient, admin_key: str) -> None:
    for bad in ("abc.é", "x" * 5000, "ä" * 10):
        response = await client.get(f"{API}/regions", params={"cursor": bad}, headers=admin(admin_key))
        assert_error(response, 400, "invalid_cursor")


async def test_concurrent_changes_to_a_region_are_all_kept(
    client: httpx.AsyncClient, admin_key: str, tenant: Tenant, sessions: Any
) -> None:
    from sqlalchemy import select

    from onderwijsregio.regions.models import Region

    async def version() -> int:
        async with sessions() as session:
            found: int = await session.scalar(select(Region.version).where(Region.id == tenant.id))
            return found

    before = await version()
    changes = [{"name": f"Regio {n}"} for n in range(8)]
    answers = await asyncio.gather(
        *(client.patch(f"{API}/regions/{tenant.id}", json=body, headers=admin(admin_key)) for body in changes)
    )
    assert [a.status_code for a in answers] == [200] * 8
    assert await version() == before + 8
