"""Helpers for engine tests: submit test writes, wait for outcomes, read effects."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import Tenant
from tests.engine_ops import Effect
from tests.test_routes import TEST_WRITES

FINAL = ("succeeded", "failed", "canceled")


async def submit(
    client: httpx.AsyncClient,
    tenant: Tenant,
    items: list[dict[str, Any]],
    headers: dict[str, str] | None = None,
    **params: str,
) -> httpx.Response:
    return await client.post(
        TEST_WRITES, json=items, params=params, headers=tenant.headers(**(headers or {}))
    )


async def accepted(
    client: httpx.AsyncClient,
    tenant: Tenant,
    items: list[dict[str, Any]],
    headers: dict[str, str] | None = None,
    **params: str,
) -> str:
    response = await submit(client, tenant, items, headers, **params)
    assert response.status_code == 202, response.text
    mutation_id: str = response.json()["data"]["mutationId"]
    return mutation_id


async def final(
    client: httpx.AsyncClient, tenant: Tenant, mutation_id: str, *, sandbox: bool = False, within: float = 20
) -> dict[str, Any]:
    prefix = "/api/sandbox" if sandbox else "/api/v2"
    deadline = time.monotonic() + within
    while True:
        response = await client.get(f"{prefix}/mutations/{mutation_id}", headers=tenant.headers())
        assert response.status_code == 200, response.text
        mutation: dict[str, Any] = response.json()["data"]
        if mutation["status"] in FINAL:
            return mutation
        assert time.monotonic() < deadline, f"{mutation_id} still {mutation['status']} after {within} s"
        await asyncio.sleep(0.1)  # well under a key's default 20 requests/s, with the test's own calls


async def effects(sessions: async_sessionmaker[AsyncSession], region_id: str) -> list[Effect]:
    async with sessions() as session:
        rows = await session.scalars(
            select(Effect).where(Effect.region_id == region_id).order_by(Effect.change_seq)
        )
        return list(rows)


async def until_processing(
    client: httpx.AsyncClient, tenant: Tenant, mutation_id: str, *, sandbox: bool = False
) -> None:
    prefix = "/api/sandbox" if sandbox else "/api/v2"
    for _ in range(200):
        status = (await client.get(f"{prefix}/mutations/{mutation_id}", headers=tenant.headers())).json()[
            "data"
        ]
        if status["status"] == "processing":
            return
        await asyncio.sleep(0.06)  # under a key's default 20 requests/s
    raise AssertionError(f"{mutation_id} never started")
