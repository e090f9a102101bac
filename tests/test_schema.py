"""GET /schema (contract §3.1): made from the validating models, per region, current at once."""

from __future__ import annotations

import httpx

from tests.conftest import Tenant
from tests.test_envelope import assert_error

API = "/api/v2"


async def test_the_schema_describes_create_and_update(client: httpx.AsyncClient, tenant: Tenant) -> None:
    create = (await client.get(f"{API}/schema", headers=tenant.headers())).json()["data"]
    assert create["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert {"name", "email", "privacyConsent"} <= set(create["required"])
    assert "Interaction" in create["$defs"] and "InteractionInput" not in str(create)
    assert "oriënteren" in str(create["properties"]["phase"])
    assert "dateOfBirth" in create["description"]
    assert (
        create
        == (
            await client.get(f"{API}/schema", params={"operation": "create"}, headers=tenant.headers())
        ).json()["data"]
    )
    update = (
        await client.get(f"{API}/schema", params={"operation": "update"}, headers=tenant.headers())
    ).json()
    assert "required" not in update["data"] and "interactions" not in update["data"]["properties"]
    assert_error(
        await client.get(f"{API}/schema", params={"operation": "delete"}, headers=tenant.headers()),
        400,
        "bad_request",
    )


async def test_a_custom_field_change_shows_at_once(
    client: httpx.AsyncClient, tenant: Tenant, admin_key: str
) -> None:
    field = {
        "key": "schoolType",
        "label": "Schooltype",
        "type": "select",
        "options": ["po", "vo"],
        "required": True,
    }
    before = (await client.get(f"{API}/schema", headers=tenant.headers())).json()["data"]
    changed = await client.patch(
        f"{API}/regions/{tenant.id}", json={"customFields": [field]}, headers={"x-api-key": admin_key}
    )
    assert changed.status_code == 200
    after = (await client.get(f"{API}/schema", headers=tenant.headers())).json()["data"]
    assert after != before
    assert "schoolType" in str(after) and "vo" in str(after)
    refused = await client.post(
        f"{API}/candidates",
        json={"name": "A", "email": "a@example.org", "privacyConsent": True},
        headers=tenant.headers(),
    )
    assert_error(refused, 422, "validation_failed")  # the new required custom field is enforced at once
