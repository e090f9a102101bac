"""What Schemathesis found where our answers and our OpenAPI document disagreed (scripts/schemathesis.sh
runs the whole document in CI; these pin the individual findings)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from onderwijsregio.app import api_routes
from tests import attachment_files as files
from tests.conftest import Tenant
from tests.engine_helpers import final
from tests.test_candidates import person
from tests.test_envelope import assert_error
from tests.test_sessions import SANDBOX, SESSION, bearer, sandbox_candidate, token_for

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


# Headers of HTTP itself, not of our API.
TRANSPORT_HEADERS = {"content-type", "content-length", "date", "server", "transfer-encoding", "connection"}


def _undocumented_headers(app: FastAPI, response: httpx.Response) -> set[str]:
    """The headers of an answer that its operation's documented answer (same status) leaves out."""
    path = response.request.url.path.replace("/api/sandbox/", "/api/v2/")
    method = response.request.method
    [route] = [r for r in api_routes(app) if r.path_regex.match(path) and method in (r.methods or ())][:1]
    documented = app.openapi()["paths"][route.path_format][method.lower()]["responses"][
        str(response.status_code)
    ]
    names = {name.lower() for name in documented.get("headers", {})}
    return set(response.headers) - names - TRANSPORT_HEADERS


async def test_every_header_we_send_is_documented(
    app: FastAPI, client: httpx.AsyncClient, make_tenant: Any
) -> None:
    origin = "https://werkenin.example.nl"
    tenant: Tenant = await make_tenant(allowedOrigins=[origin])
    headers = tenant.headers()
    document = files.base64_input(files.pdf("h"), "cv.pdf")
    created = await client.post(
        f"{API}/candidates", json={**person(), "curriculumVitae": [document]}, headers=headers
    )
    assert created.status_code == 202, created.text
    mutation = await final(client, tenant, created.json()["data"]["mutationId"])
    candidate_id = mutation["results"][0]["resourceId"]
    candidate = (await client.get(f"{API}/candidates/{candidate_id}", headers=headers)).json()["data"]
    attachment_id = candidate["curriculumVitae"][0]["id"]
    _, address = await sandbox_candidate(client, tenant)
    token = await token_for(client, tenant, address)
    answers = [
        created,
        await client.get(f"{API}/candidates/{candidate_id}", headers=headers),
        await client.get(f"{API}/attachments/{attachment_id}/content", headers=headers),
        await client.get(f"{API}/candidates/cand_unknown", headers=headers),
        await client.get(f"{API}/candidates?pageSize=0", headers=headers),
        await client.post(f"{API}/candidates", json={"name": ""}, headers=headers),
        await client.get(f"{API}/candidates", headers={"x-api-key": "oreg_wrong"}),
        await client.get(f"{API}/candidates", headers={"api-key": tenant.key}),
        await client.get(f"{SANDBOX}{SESSION}", headers=bearer(token, origin=origin)),
        await client.get("/health"),
    ]
    assert [answer.status_code for answer in answers] == [202, 200, 200, 404, 400, 422, 401, 200, 200, 200]
    for answer in answers:
        missing = _undocumented_headers(app, answer)
        assert not missing, (
            f"{answer.request.method} {answer.request.url.path} {answer.status_code}: {missing}"
        )
