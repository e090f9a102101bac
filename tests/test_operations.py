"""Operations routes (contract §3.9): liveness, readiness, the OpenAPI document."""

from __future__ import annotations

import httpx

from onderwijsregio.app import create_app
from onderwijsregio.config import Settings
from tests.test_envelope import assert_error


async def test_liveness_and_readiness(client: httpx.AsyncClient) -> None:
    alive = await client.get("/health")
    assert alive.status_code == 200
    assert alive.json()["data"] == {"status": "ok"}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["data"] == {"database": "ok", "queue": "ok", "rateLimits": "ok"}
    assert "ratelimit-limit" not in ready.headers  # operations routes are not rate limited


async def test_not_ready_when_the_rate_limit_store_is_gone(settings: Settings, migrated: str) -> None:
    unreachable = settings.model_copy(update={"rate_limit_storage": "redis://127.0.0.1:1/0"})
    app = create_app(unreachable, run_workers=False)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
    async with app.router.lifespan_context(app), http:
        response = await http.get("/health/ready")
    assert_error(response, 503, "service_unavailable")
    issues = response.json()["error"]["issues"]
    assert {tuple(i["path"]): i["code"] for i in issues} == {
        ("database",): "ok",
        ("queue",): "ok",
        ("rateLimits",): "not ok",
    }


async def test_openapi_document_describes_the_api(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.1")
    tags = {
        tag for operations in document["paths"].values() for op in operations.values() for tag in op["tags"]
    }
    assert tags <= {
        "Auth",
        "Regions",
        "Admin",
        "Schema",
        "Candidates",
        "Interactions",
        "Attachments",
        "Webhooks",
        "Mutations",
        "Sandbox",
        "Operations",
    }
    create = document["paths"]["/api/v2/regions"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]
    assert "examples" in document["components"]["schemas"]["RegionCreate"]
    for status in ("401", "403", "422", "429"):
        assert status in create["responses"], status
    assert "RateLimit-Remaining" in create["responses"]["201"]["headers"]
