"""Candidates created through the engine and read back (contract §3.2): create, get, list, find."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.conftest import Tenant
from tests.engine_helpers import final
from tests.test_envelope import assert_error

API = "/api/v2"


def person(**changes: Any) -> dict[str, Any]:
    body = {"name": "Jan Jansen", "email": f"jan-{uuid.uuid4().hex[:10]}@example.org", "privacyConsent": True}
    body.update(changes)
    return body


async def create(
    client: httpx.AsyncClient, tenant: Tenant, *people: dict[str, Any], prefix: str = API
) -> list[str]:
    response = await client.post(f"{prefix}/candidates", json=list(people), headers=tenant.headers())
    assert response.status_code == 202, response.text
    data = response.json()["data"]
    assert (await final(client, tenant, data["mutationId"], sandbox=prefix != API))["status"] == "succeeded"
    ids: list[str] = data["resourceIds"]
    return ids


async def test_a_created_candidate_reads_back_with_defaults(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    interaction = {"type": "Telefonisch", "performedAt": "2026-03-24T11:15:00+01:00", "title": "Intake"}
    [cid] = await create(client, tenant, person(city="Utrecht", interactions=[interaction]))
    data = (await client.get(f"{API}/candidates/{cid}", headers=tenant.headers())).json()["data"]
    assert data["id"] == cid and data["regionId"] == tenant.id
    assert data["phase"] == "nieuw" and data["archived"] is False and data["city"] == "Utrecht"
    assert data["sectors"] == [] and data["customFields"] == {} and data["phone"] is None
    assert data["privacyConsentAt"].endswith("Z") and data["createdAt"] == data["updatedAt"]
    assert "interactions" not in data
    included = await client.get(
        f"{API}/candidates/{cid}", params={"include": "interactions"}, headers=tenant.headers()
    )
    [stored] = included.json()["data"]["interactions"]
    assert stored["performedAt"] == "2026-03-24T10:15:00.000Z" and stored["title"] == "Intake"
    assert stored["candidateId"] == cid and stored["id"].startswith("int_")


async def test_invalid_candidates_queue_nothing(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.post(
        f"{API}/candidates", json=[person(), person(email="nope")], headers=tenant.headers()
    )
    assert_error(response, 422, "validation_failed")
    assert [i["path"] for i in response.json()["error"]["issues"]] == [["1", "email"]]
    assert_error(
        await client.post(f"{API}/candidates", json=[], headers=tenant.headers()), 422, "validation_failed"
    )
    assert_error(
        await client.post(f"{API}/candidates", json=[person()] * 11, headers=tenant.headers()),
        422,
        "validation_failed",
    )
    form = await client.post(
        f"{API}/candidates",
        content=b"name=Jan",
        headers=tenant.headers(**{"content-type": "application/x-www-form-urlencoded"}),
    )
    assert_error(form, 415, "unsupported_media_type")
    assert (await client.get(f"{API}/mutations", headers=tenant.headers())).json()["data"] == []


async def test_lists_page_in_each_order(client: httpx.AsyncClient, make_tenant: Any) -> None:
    tenant: Tenant = await make_tenant()
    ids = []
    for n in range(5):
        ids += await create(client, tenant, person(name=f"Kandidaat {n}"))
    for sort, expected in (("createdAt", ids), ("-createdAt", ids[::-1]), ("updatedAt", ids)):
        seen: list[str] = []
        params: dict[str, str | int] = {"pageSize": 2, "sort": sort}
        while True:
            page = (await client.get(f"{API}/candidates", params=params, headers=tenant.headers())).json()
            seen += [c["id"] for c in page["data"]]
            if page["meta"]["cursor"] is None:
                break
            params["cursor"] = page["meta"]["cursor"]
        assert seen == expected, sort
    narrowed = await client.get(f"{API}/candidates", params={"fields": "name,city"}, headers=tenant.headers())
    assert set(narrowed.json()["data"][0]) == {"id", "name", "city"}
    assert_error(
        await client.get(f"{API}/candidates", params={"fields": "name,shoeSize"}, headers=tenant.headers()),
        400,
        "bad_request",
    )
    assert_error(
        await client.get(f"{API}/candidates", params={"sort": "name"}, headers=tenant.headers()),
        400,
        "bad_request",
    )
    foreign = await client.get(f"{API}/regions", params={"pageSize": 1}, headers=tenant.headers())
    assert foreign.status_code == 403


async def test_find_by_email_or_phone(client: httpx.AsyncClient, tenant: Tenant) -> None:
    email = f"Piet.{uuid.uuid4().hex[:8]}@Example.org"
    [cid] = await create(client, tenant, person(email=email, phone="06-12345678"))
    by_email = await client.post(
        f"{API}/candidates/find", json={"email": email.lower()}, headers=tenant.headers()
    )
    assert [c["id"] for c in by_email.json()["data"]] == [cid]
    by_phone = await client.get(
        f"{API}/candidates/find", params={"phone": "+31 6 1234 5678"}, headers=tenant.headers()
    )
    assert cid in [c["id"] for c in by_phone.json()["data"]]
    assert_error(await client.get(f"{API}/candidates/find", headers=tenant.headers()), 400, "bad_request")
    assert_error(
        await client.post(
            f"{API}/candidates/find", json={"email": email, "age": 3}, headers=tenant.headers()
        ),
        422,
        "validation_failed",
    )


async def test_candidates_stay_in_their_region_and_mode(client: httpx.AsyncClient, make_tenant: Any) -> None:
    owner, other = await make_tenant(), await make_tenant()
    email = f"geheim-{uuid.uuid4().hex[:8]}@example.org"
    [cid] = await create(client, owner, person(email=email))
    [sandbox_id] = await create(client, owner, person(email=email), prefix="/api/sandbox")
    assert_error(await client.get(f"{API}/candidates/{cid}", headers=other.headers()), 404, "not_found")
    assert (
        await client.get(f"{API}/candidates/find", params={"email": email}, headers=other.headers())
    ).json()["data"] == []
    assert (await client.get(f"{API}/candidates", headers=other.headers())).json()["data"] == []
    assert_error(
        await client.get(f"{API}/candidates/{sandbox_id}", headers=owner.headers()), 404, "not_found"
    )
    live_found = await client.get(f"{API}/candidates/find", params={"email": email}, headers=owner.headers())
    assert [c["id"] for c in live_found.json()["data"]] == [cid]
    assert_error(await client.get(f"{API}/candidates/{owner.id}", headers=owner.headers()), 404, "not_found")


async def test_sandbox_reset_removes_sandbox_candidates(client: httpx.AsyncClient, tenant: Tenant) -> None:
    [sandbox_id] = await create(
        client,
        tenant,
        person(interactions=[{"type": "Anders", "performedAt": "2026-03-24T10:00:00Z"}]),
        prefix="/api/sandbox",
    )
    [live_id] = await create(client, tenant, person())
    reset = await client.post(f"{API}/sandbox/reset", headers=tenant.headers())
    await final(client, tenant, reset.json()["data"]["mutationId"], sandbox=True)
    assert_error(
        await client.get(f"/api/sandbox/candidates/{sandbox_id}", headers=tenant.headers()), 404, "not_found"
    )
    assert (await client.get(f"{API}/candidates/{live_id}", headers=tenant.headers())).status_code == 200


async def test_reading_needs_read_and_writing_needs_write(client: httpx.AsyncClient, tenant: Tenant) -> None:
    writer = await client.post(
        f"{API}/api-keys", json={"name": "form", "permissions": ["write"]}, headers=tenant.headers()
    )
    form_key = {"x-api-key": writer.json()["data"]["key"]}
    assert (await client.post(f"{API}/candidates", json=person(), headers=form_key)).status_code == 202
    assert_error(await client.get(f"{API}/candidates", headers=form_key), 403, "forbidden")
    assert_error(
        await client.post(f"{API}/candidates/find", json={"email": "a@b.nl"}, headers=form_key),
        403,
        "forbidden",
    )
