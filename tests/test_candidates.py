"""Candidates created through the engine and read back (contract §3.2): create, get, list, find."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.conftest import Tenant
from tests.engine_helpers import accepted, final
from tests.log_scan import SCAN
from tests.test_envelope import assert_error

API = "/api/v2"


def person(**changes: Any) -> dict[str, Any]:
    body = {"name": "Jan Jansen", "email": f"jan-{uuid.uuid4().hex[:10]}@example.org", "privacyConsent": True}
    body.update(changes)
    SCAN.remember_person(body)
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


async def run(
    client: httpx.AsyncClient, tenant: Tenant, method: str, path: str, body: Any = None
) -> dict[str, Any]:
    response = await client.request(method, f"{API}{path}", json=body, headers=tenant.headers())
    assert response.status_code == 202, response.text
    return await final(client, tenant, response.json()["data"]["mutationId"])


async def test_patch_archive_and_erase(client: httpx.AsyncClient, tenant: Tenant, admin_key: str) -> None:
    field = {"key": "hasCar", "label": "Auto", "type": "boolean", "required": False}
    await client.patch(
        f"{API}/regions/{tenant.id}", json={"customFields": [field]}, headers={"x-api-key": admin_key}
    )
    [cid] = await create(
        client,
        tenant,
        person(
            city="Delft",
            notes="Blijft",
            sectors=["Primair onderwijs"],
            customFields={"hasCar": True},
            privacyConsent=False,
        ),
    )
    first = (await client.get(f"{API}/candidates/{cid}", headers=tenant.headers())).json()["data"]
    assert first["privacyConsentAt"] is None
    done = await run(
        client,
        tenant,
        "PATCH",
        f"/candidates/{cid}",
        {
            "city": None,
            "sectors": ["Hoger onderwijs"],
            "privacyConsent": True,
            "customFields": {"hasCar": None},
        },
    )
    assert done["results"][0]["action"] == "updated"
    data = (await client.get(f"{API}/candidates/{cid}", headers=tenant.headers())).json()["data"]
    assert data["city"] is None and data["notes"] == "Blijft" and data["sectors"] == ["Hoger onderwijs"]
    assert data["customFields"] == {} and data["privacyConsentAt"] is not None
    assert data["updatedAt"] > first["updatedAt"]
    for bad in (
        {},
        {"email": None},
        {"customFields": None},  # its keys clear one by one
        {"interactions": [{"type": "Anders", "performedAt": "2026-01-01T00:00:00Z"}]},
    ):
        assert_error(
            await client.patch(f"{API}/candidates/{cid}", json=bad, headers=tenant.headers()),
            422,
            "validation_failed",
        )
    assert (await run(client, tenant, "POST", f"/candidates/{cid}/archive"))["results"][0][
        "action"
    ] == "archived"
    assert cid not in [
        c["id"] for c in (await client.get(f"{API}/candidates", headers=tenant.headers())).json()["data"]
    ]
    assert (await run(client, tenant, "POST", f"/candidates/{cid}/unarchive"))["status"] == "succeeded"
    assert (await run(client, tenant, "DELETE", f"/candidates/{cid}"))["results"][0]["action"] == "deleted"
    assert_error(await client.get(f"{API}/candidates/{cid}", headers=tenant.headers()), 404, "not_found")
    # a write to an erased (or never created) candidate is refused at once, nothing queued
    before = len((await client.get(f"{API}/mutations", headers=tenant.headers())).json()["data"])
    for method, path in (
        ("PATCH", f"/candidates/{cid}"),
        ("DELETE", f"/candidates/{cid}"),
        ("POST", "/candidates/cand_01ZZZZZZZZZZZZZZZZZZZZZZZZ/archive"),
    ):
        body = {"city": "Nergens"} if method == "PATCH" else None
        assert_error(
            await client.request(method, f"{API}{path}", json=body, headers=tenant.headers()),
            404,
            "not_found",
        )
    assert len((await client.get(f"{API}/mutations", headers=tenant.headers())).json()["data"]) == before


async def test_custom_fields_can_be_added_to_a_candidate_created_without(
    client: httpx.AsyncClient, tenant: Tenant, admin_key: str
) -> None:
    field = {"key": "hasCar", "label": "Auto", "type": "boolean", "required": False}
    await client.patch(
        f"{API}/regions/{tenant.id}", json={"customFields": [field]}, headers={"x-api-key": admin_key}
    )
    [cid] = await create(client, tenant, person(customFields=None))
    done = await run(client, tenant, "PATCH", f"/candidates/{cid}", {"customFields": {"hasCar": False}})
    assert done["status"] == "succeeded", done
    data = (await client.get(f"{API}/candidates/{cid}", headers=tenant.headers())).json()["data"]
    assert data["customFields"] == {"hasCar": False}


async def test_a_write_to_a_candidate_still_being_created_is_accepted(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await accepted(client, tenant, [{"value": "slow", "prepareSeconds": 1.5}])  # the lane waits behind it
    created = await client.post(f"{API}/candidates", json=person(), headers=tenant.headers())
    cid = created.json()["data"]["resourceIds"][0]
    patched = await client.patch(f"{API}/candidates/{cid}", json={"city": "Gouda"}, headers=tenant.headers())
    assert patched.status_code == 202  # pending creation counts as existing
    pending = await client.get(f"{API}/candidates/{cid}", headers=tenant.headers())
    assert pending.status_code == 404, "the creation should still have been waiting"
    await final(client, tenant, patched.json()["data"]["mutationId"])
    data = (await client.get(f"{API}/candidates/{cid}", headers=tenant.headers())).json()["data"]
    assert data["city"] == "Gouda"


async def test_upsert_updates_the_oldest_match(client: httpx.AsyncClient, tenant: Tenant) -> None:
    email = f"upsert-{uuid.uuid4().hex[:8]}@example.org"
    first = await run(client, tenant, "POST", "/candidates/upsert", person(email=email, city="Gouda"))
    assert first["results"][0]["action"] == "created"
    cid = first["results"][0]["resourceId"]
    again = await run(
        client,
        tenant,
        "POST",
        "/candidates/upsert",
        person(
            email=email.upper(),
            name="Nieuw",
            interactions=[{"type": "E-mail", "performedAt": "2026-03-24T10:00:00Z"}],
        ),
    )
    assert again["results"][0] == {
        "index": 0,
        "status": "succeeded",
        "resourceType": "candidate",
        "resourceId": cid,
        "action": "updated",
    }
    data = (
        await client.get(
            f"{API}/candidates/{cid}", params={"include": "interactions"}, headers=tenant.headers()
        )
    ).json()["data"]
    assert data["name"] == "Nieuw" and data["city"] == "Gouda" and len(data["interactions"]) == 1


async def test_sort_by_updated_at_follows_every_change(client: httpx.AsyncClient, make_tenant: Any) -> None:
    tenant: Tenant = await make_tenant()
    first, second = await create(client, tenant, person(), person())
    page = (
        await client.get(f"{API}/candidates", params={"sort": "updatedAt"}, headers=tenant.headers())
    ).json()
    assert [c["id"] for c in page["data"]] == [first, second]
    resume = page["meta"]["cursor"]
    assert resume is None
    await run(client, tenant, "PATCH", f"/candidates/{first}", {"city": "Ede"})
    again = (
        await client.get(f"{API}/candidates", params={"sort": "updatedAt"}, headers=tenant.headers())
    ).json()
    assert [c["id"] for c in again["data"]] == [second, first]
