"""Idempotency (contract §2.1, §2.4)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onderwijsregio.engine.models import Mutation
from tests.conftest import Tenant
from tests.engine_helpers import final, submit
from tests.test_envelope import assert_error

Sessions = async_sessionmaker[AsyncSession]
ITEMS = [{"value": "same"}]


def key() -> str:
    return f"key-{uuid.uuid4().hex}"


async def mutations_with_key(sessions: Sessions, region_id: str, idempotency_key: str) -> int:
    async with sessions() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(Mutation)
            .where(
                Mutation.region_id == region_id,
                Mutation.sandbox.is_(False),
                Mutation.idempotency_key == idempotency_key,
            )
        )
    return int(count or 0)


async def test_same_key_same_request_replays_the_202(
    client: httpx.AsyncClient, tenant: Tenant, sessions: Sessions
) -> None:
    reused = key()
    first = await submit(client, tenant, ITEMS, idempotencyKey=reused)
    assert first.status_code == 202
    assert "idempotent-replayed" not in first.headers
    again = await submit(client, tenant, [{"value": "same"}], idempotencyKey=reused)
    assert again.status_code == 202
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["data"] == first.json()["data"]
    assert again.headers["location"] == first.headers["location"]
    mutation = await final(client, tenant, first.json()["data"]["mutationId"])
    assert mutation["idempotencyKey"] == reused
    assert await mutations_with_key(sessions, tenant.id, reused) == 1
    # a replay after completion still answers the original 202
    late = await submit(client, tenant, ITEMS, idempotencyKey=reused)
    assert late.json()["data"] == first.json()["data"]


async def test_body_is_compared_as_canonical_json(client: httpx.AsyncClient, tenant: Tenant) -> None:
    reused = key()
    body_a = b'[{"value": "x", "other": 1}]'
    body_b = b'[ {"other":1,"value":"x"} ]'
    headers = tenant.headers(**{"content-type": "application/json"})
    first = await client.post(
        "/api/v2/test-records", content=body_a, params={"idempotencyKey": reused}, headers=headers
    )
    again = await client.post(
        "/api/v2/test-records", content=body_b, params={"idempotencyKey": reused}, headers=headers
    )
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json()["data"]["mutationId"] == first.json()["data"]["mutationId"]


async def test_same_key_different_request_is_422(client: httpx.AsyncClient, tenant: Tenant) -> None:
    reused = key()
    assert (await submit(client, tenant, ITEMS, idempotencyKey=reused)).status_code == 202
    assert_error(
        await submit(client, tenant, [{"value": "other"}], idempotencyKey=reused),
        422,
        "idempotency_key_reused",
    )
    # a different query (here a callback URL) makes it a different request too
    other_query = await submit(
        client, tenant, ITEMS, idempotencyKey=reused, callbackUrl="http://127.0.0.1:9/x"
    )
    assert_error(other_query, 422, "idempotency_key_reused")


async def test_header_alias_and_conflicts(client: httpx.AsyncClient, tenant: Tenant) -> None:
    reused = key()
    first = await submit(client, tenant, ITEMS, headers={"Idempotency-Key": reused})
    via_query = await submit(client, tenant, ITEMS, idempotencyKey=reused)
    assert via_query.headers["idempotent-replayed"] == "true"
    assert via_query.json()["data"]["mutationId"] == first.json()["data"]["mutationId"]
    both = await submit(client, tenant, ITEMS, headers={"Idempotency-Key": reused}, idempotencyKey=reused)
    assert both.json()["data"]["mutationId"] == first.json()["data"]["mutationId"]
    clash = await submit(client, tenant, ITEMS, headers={"Idempotency-Key": "a"}, idempotencyKey="b")
    assert_error(clash, 400, "bad_request")
    for bad in ("", "with space", "x" * 256, "naïve"):
        assert_error(await submit(client, tenant, ITEMS, idempotencyKey=bad), 400, "bad_request")


async def test_rejected_requests_do_not_use_up_the_key(client: httpx.AsyncClient, tenant: Tenant) -> None:
    reused = key()
    assert_error(await submit(client, tenant, [], idempotencyKey=reused), 422, "validation_failed")
    refused_url = await submit(
        client, tenant, ITEMS, idempotencyKey=reused, callbackUrl="http://10.0.0.1:8080/x"
    )
    assert_error(refused_url, 422, "url_not_allowed")
    accepted = await submit(client, tenant, ITEMS, idempotencyKey=reused)
    assert accepted.status_code == 202
    assert "idempotent-replayed" not in accepted.headers


async def test_keys_are_scoped_to_region_and_mode(client: httpx.AsyncClient, make_tenant: Any) -> None:
    reused = key()
    first, second = await make_tenant(), await make_tenant()
    a = await submit(client, first, ITEMS, idempotencyKey=reused)
    b = await submit(client, second, ITEMS, idempotencyKey=reused)
    sandbox = await client.post(
        "/api/sandbox/test-records", json=ITEMS, params={"idempotencyKey": reused}, headers=first.headers()
    )
    ids = {
        a.json()["data"]["mutationId"],
        b.json()["data"]["mutationId"],
        sandbox.json()["data"]["mutationId"],
    }
    assert len(ids) == 3
    assert all("idempotent-replayed" not in r.headers for r in (a, b, sandbox))


async def test_fifty_identical_requests_at_once_make_one_mutation(
    client: httpx.AsyncClient, make_tenant: Any, sessions: Sessions
) -> None:
    limits = {"keyRequestsPerSecond": 1000, "keyBurst": 2000, "requestsPerSecond": 1000, "burst": 2000}
    tenant: Tenant = await make_tenant(rateLimit=limits)
    reused = key()
    answers = await asyncio.gather(*(submit(client, tenant, ITEMS, idempotencyKey=reused) for _ in range(50)))
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {202, 409}, statuses
    ids = {a.json()["data"]["mutationId"] for a in answers if a.status_code == 202}
    assert len(ids) == 1
    assert await mutations_with_key(sessions, tenant.id, reused) == 1
    assert sum(1 for a in answers if "idempotent-replayed" not in a.headers and a.status_code == 202) == 1
