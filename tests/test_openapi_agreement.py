"""What Schemathesis found where our answers and our OpenAPI document disagreed (scripts/schemathesis.sh
runs the whole document in CI; these pin the individual findings)."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import Tenant
from tests.test_envelope import assert_error

API = "/api/v2"


def test_every_operation_documents_the_errors_it_can_give(app: FastAPI) -> None:
    document = app.openapi()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            documented = set(operation["responses"])
            expected = {"400", "500", "503"}
            if operation.get("security") != []:
                expected |= {"401", "403", "429"}
            if "{" in path:
                expected.add("404")
            if "requestBody" in operation:
                expected |= {"413", "415", "422"}
            assert expected <= documented, f"{method.upper()} {path} leaves out {expected - documented}"


async def test_a_path_written_out_names_only_its_own_methods(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """/regions/me matches the pattern of /regions/{regionId}, but PATCH is not one of its methods."""
    for path, allowed in (("/regions/me", "GET"), ("/webhooks/signing-secret", "GET")):
        response = await client.request("OPTIONS", f"{API}{path}", headers=tenant.headers())
        assert_error(response, 405, "method_not_allowed")
        assert response.headers["allow"] == allowed
    templated = await client.request("PUT", f"{API}/webhooks/whk_0", headers=tenant.headers())
    assert templated.headers["allow"] == "DELETE, GET, PATCH"


@pytest.mark.parametrize("moment", ["0.5", "1700000000", "2026-01-31", "yesterday", "2026-01-31T09:00:00"])
async def test_moments_in_queries_are_iso_8601_with_an_offset(
    client: httpx.AsyncClient, tenant: Tenant, moment: str
) -> None:
    response = await client.get(
        f"{API}/candidates", params={"updatedSince": moment}, headers=tenant.headers()
    )
    assert_error(response, 400, "bad_request")
    good = await client.get(
        f"{API}/candidates", params={"updatedSince": "2026-01-31T09:00:00+01:00"}, headers=tenant.headers()
    )
    assert good.status_code == 200, good.text


@pytest.mark.parametrize("listing", ["/candidates", "/events", "/mutations", "/webhooks", "/api-keys"])
async def test_an_empty_cursor_is_refused_on_every_listing(
    client: httpx.AsyncClient, tenant: Tenant, listing: str
) -> None:
    response = await client.get(f"{API}{listing}?cursor=", headers=tenant.headers())
    assert_error(response, 400, "invalid_cursor")


async def test_a_name_is_bounded_as_sent_not_only_once_trimmed(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    padded = "\f" + "k" * 200
    refused = await client.post(f"{API}/api-keys", json={"name": padded}, headers=tenant.headers())
    assert_error(refused, 422, "validation_failed")
    trimmed = await client.post(f"{API}/api-keys", json={"name": " " + "k" * 199}, headers=tenant.headers())
    assert trimmed.status_code == 201, trimmed.text
    assert trimmed.json()["data"]["name"] == "k" * 199
