"""Jobs on a clock (contract §2.4 retention, §3.8 daily wipe) and the operators' queue view (§3.6)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onderwijsregio.engine.maintenance import Maintenance, next_wipe
from onderwijsregio.engine.models import IdempotencyRecord
from onderwijsregio.engine.wakeup import Waker
from onderwijsregio.scope import Scope, scoped
from onderwijsregio.storage.files import LocalFileStore
from tests.conftest import Tenant
from tests.engine_helpers import accepted, final, submit

Sessions = async_sessionmaker[AsyncSession]


def test_the_daily_wipe_is_at_three_in_amsterdam_in_summer_and_winter() -> None:
    winter = next_wipe(datetime(2026, 1, 10, 12, 0, tzinfo=UTC), time(3, 0))
    assert winter == datetime(2026, 1, 11, 2, 0, tzinfo=UTC)  # 03:00 CET
    summer = next_wipe(datetime(2026, 7, 10, 0, 30, tzinfo=UTC), time(3, 0))
    assert summer == datetime(2026, 7, 10, 1, 0, tzinfo=UTC)  # 03:00 CEST, later that night
    exactly = next_wipe(datetime(2026, 7, 10, 1, 0, tzinfo=UTC), time(3, 0))
    assert exactly == datetime(2026, 7, 11, 1, 0, tzinfo=UTC)


async def test_expired_idempotency_records_are_forgotten(
    client: httpx.AsyncClient, tenant: Tenant, app: Any, write_sessions: Sessions, tmp_path: Path
) -> None:
    fresh = await submit(client, tenant, [{"value": "a"}], idempotencyKey="keep-me")
    stale = await submit(client, tenant, [{"value": "b"}], idempotencyKey="forget-me")
    scope = Scope(tenant.id, False)
    async with write_sessions() as session, session.begin():
        await session.execute(
            scoped(update(IdempotencyRecord), IdempotencyRecord, scope)
            .where(IdempotencyRecord.key == "forget-me")
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    maintenance = Maintenance(write_sessions, Waker(), time(3, 0), LocalFileStore(tmp_path))
    assert await maintenance.forget_expired_keys() >= 1
    async with write_sessions() as session:
        keys = set(await session.scalars(scoped(select(IdempotencyRecord.key), IdempotencyRecord, scope)))
    assert keys == {"keep-me"}
    # the forgotten key may be used again for another request; the kept one still replays
    reused = await submit(client, tenant, [{"value": "other"}], idempotencyKey="forget-me")
    assert reused.status_code == 202
    assert reused.json()["data"]["mutationId"] != stale.json()["data"]["mutationId"]
    replay = await submit(client, tenant, [{"value": "a"}], idempotencyKey="keep-me")
    assert replay.json()["data"]["mutationId"] == fresh.json()["data"]["mutationId"]


async def test_the_daily_wipe_resets_changed_sandboxes_once(
    client: httpx.AsyncClient, make_tenant: Any, write_sessions: Sessions, tmp_path: Path
) -> None:
    tenant: Tenant = await make_tenant()
    sandbox = await client.post("/api/sandbox/test-records", json=[{"value": "s"}], headers=tenant.headers())
    await final(client, tenant, sandbox.json()["data"]["mutationId"], sandbox=True)
    maintenance = Maintenance(write_sessions, Waker(), time(3, 0), LocalFileStore(tmp_path))
    day = datetime.now(UTC).date() + timedelta(days=400)  # a day no other test wipes
    assert await maintenance.wipe_sandboxes(day) >= 1
    assert await maintenance.wipe_sandboxes(day) == 0  # nothing changed since: no second wipe
    # a sandbox write after the wipe: another process running the same day's wipe still wipes once
    again = await client.post("/api/sandbox/test-records", json=[{"value": "t"}], headers=tenant.headers())
    assert again.status_code == 202
    assert await maintenance.wipe_sandboxes(day) == 0
    listed = await client.get(
        "/api/sandbox/mutations", params={"operation": "sandbox.reset"}, headers=tenant.headers()
    )
    [reset] = listed.json()["data"]
    assert reset["idempotencyKey"] == f"daily sandbox reset {day.isoformat()}"
    assert (await final(client, tenant, reset["id"], sandbox=True))["status"] == "succeeded"


async def test_the_admin_queue_shows_each_regions_lanes(
    client: httpx.AsyncClient, tenant: Tenant, admin_key: str
) -> None:
    done = await accepted(client, tenant, [{"value": "q"}])
    await final(client, tenant, done)
    await accepted(client, tenant, [{"value": "f", "fail": "permanent"}])
    rows = (await client.get("/api/v2/admin/queue", headers={"x-api-key": admin_key})).json()["data"]
    mine = [row for row in rows if row["regionId"] == tenant.id]
    assert len(mine) == 1
    assert mine[0]["sandbox"] is False
    assert set(mine[0]) == {
        "regionId",
        "sandbox",
        "queued",
        "processing",
        "failedLast24h",
        "oldestQueuedAgeSeconds",
        "appliedLastMinute",
    }
    assert mine[0]["appliedLastMinute"] >= 1
