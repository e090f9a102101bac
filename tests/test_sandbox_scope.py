"""Sandbox mode: the prefix and the header resolve to one scope value (contract §1)."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from fastapi import Depends, Request
from starlette.responses import Response

from onderwijsregio.app import create_app
from onderwijsregio.auth.dependencies import RegionRead
from onderwijsregio.auth.schemas import RegionContext
from onderwijsregio.config import Settings
from onderwijsregio.envelope import respond
from tests.conftest import API, Tenant


async def test_platform_routes_answer_live_in_both_modes(client: httpx.AsyncClient, tenant: Tenant) -> None:
    for path, headers in (
        ("/api/sandbox/regions/me", {}),
        (f"{API}/regions/me", {"x-api-sandbox": "true"}),
        ("/api/sandbox/api-keys", {}),
    ):
        response = await client.get(path, headers=tenant.headers(**headers))
        assert response.status_code == 200, response.text
        assert response.json()["meta"]["sandboxEnabled"] is False
    same = (await client.get("/api/sandbox/regions/me", headers=tenant.headers())).json()["data"]
    assert same == (await client.get(f"{API}/regions/me", headers=tenant.headers())).json()["data"]


async def test_prefix_and_header_give_region_routes_the_same_scope(
    settings: Settings, tenant: Tenant
) -> None:
    """A probe route declared like every region-data route reports the scope it was handed."""
    app = create_app(settings, run_workers=False)

    @app.get(f"{API}/probe-scope")
    async def probe(request: Request, caller: Annotated[RegionContext, Depends(RegionRead)]) -> Response:
        return respond(
            request, {"regionId": caller.scope.region_id, "sandbox": caller.scope.sandbox}, "Probe"
        )

    answers: dict[str, Any] = {}
    async with app.router.lifespan_context(app):
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
        async with http:
            for label, path, headers in (
                ("live", f"{API}/probe-scope", {}),
                ("prefix", "/api/sandbox/probe-scope", {}),
                ("header", f"{API}/probe-scope", {"x-api-sandbox": "true"}),
                ("header false", f"{API}/probe-scope", {"x-api-sandbox": "false"}),
            ):
                answers[label] = (await http.get(path, headers=tenant.headers(**headers))).json()
    assert answers["live"]["data"] == {"regionId": tenant.id, "sandbox": False}
    assert answers["prefix"]["data"] == answers["header"]["data"] == {"regionId": tenant.id, "sandbox": True}
    assert answers["header false"]["data"]["sandbox"] is False
    assert answers["prefix"]["meta"]["sandboxEnabled"] is True
    assert answers["header"]["meta"]["sandboxEnabled"] is True
    assert answers["live"]["meta"]["sandboxEnabled"] is False
