"""The event feed and webhook endpoints (contract §3.7): events in commit order, thin, resumable; and
endpoints with their own secrets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onderwijsregio.scope import Scope, scoped
from onderwijsregio.storage.files import LocalFileStore
from onderwijsregio.webhooks.apply import forget_old_events
from onderwijsregio.webhooks.models import Event
from tests import attachment_files as files
from tests.conftest import Tenant
from tests.engine_helpers import final
from tests.test_candidates import create, person, run
from tests.test_envelope import assert_error

API, SANDBOX = "/api/v2", "/api/sandbox"


async def feed(
    client: httpx.AsyncClient, tenant: Tenant, prefix: str = API, **params: Any
) -> tuple[list[Any], str]:
    answer = await client.get(f"{prefix}/events", params=params, headers=tenant.headers())
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return body["data"], body["meta"]["cursor"]


async def test_every_change_is_told_in_commit_order_and_thin(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    interaction = {"type": "Anders", "performedAt": "2026-03-24T10:00:00Z", "summary": "geheim gesprek"}
    [cid] = await create(
        client,
        tenant,
        person(
            name="Geheime Naam", interactions=[interaction], curriculumVitae=[files.base64_input(files.pdf())]
        ),
    )
    await run(client, tenant, "PATCH", f"/candidates/{cid}", {"city": "Tiel"})
    await run(client, tenant, "POST", f"/candidates/{cid}/archive")
    await run(client, tenant, "POST", f"/candidates/{cid}/archive")  # no change, nothing to tell
    unreachable = {"url": "http://127.0.0.1:9999/cv.pdf", "filename": "cv.pdf"}  # nothing listens there
    failed = await run(
        client, tenant, "POST", f"/candidates/{cid}/attachments", {"curriculumVitae": [unreachable]}
    )
    assert failed["status"] == "failed"
    await run(client, tenant, "DELETE", f"/candidates/{cid}")
    events, _ = await feed(client, tenant, pageSize=100)
    assert [e["type"] for e in events] == [
        "candidate.created",
        "interaction.created",
        "attachment.added",
        "mutation.succeeded",
        "candidate.updated",
        "mutation.succeeded",
        "candidate.archived",
        "mutation.succeeded",
        "mutation.succeeded",
        "mutation.failed",  # its failed item tells nothing else
        "candidate.deleted",
        "mutation.succeeded",
    ]
    first = events[0]
    assert set(first) == {"id", "type", "createdAt", "sandbox", "data"} and first["id"].startswith("evt_")
    assert first["sandbox"] is False and first["data"]["candidateId"] == cid
    assert first["data"]["resourceIds"] == [cid] and first["data"]["mutationId"].startswith("mut_")
    assert "Geheime" not in str(events) and "geheim" not in str(events)  # no personal data


async def test_a_client_resumes_from_its_cursor_missing_nothing(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """Pages of one until `meta.cursor` is null (§1.3); later, the cursor of the last page gives that
    page again and everything after it."""
    await create(client, tenant, person(), person())
    seen, cursor = await feed(client, tenant, pageSize=1)
    last_page_cursor = None
    while cursor is not None:
        last_page_cursor = cursor
        page, cursor = await feed(client, tenant, pageSize=1, cursor=cursor)
        seen += page
    assert [e["type"] for e in seen] == ["candidate.created", "candidate.created", "mutation.succeeded"]
    await create(client, tenant, person())
    later, _ = await feed(client, tenant, cursor=last_page_cursor)
    assert [e["type"] for e in later] == ["mutation.succeeded", "candidate.created", "mutation.succeeded"]
    assert later[0]["id"] == seen[-1]["id"]  # the last page again: at least once, never a gap
    assert_error(
        await client.get(f"{API}/events", params={"cursor": "forged"}, headers=tenant.headers()),
        400,
        "invalid_cursor",
    )


async def test_sandbox_events_stay_in_the_sandbox_until_its_reset(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await create(client, tenant, person(), prefix=SANDBOX)
    sandboxed, _ = await feed(client, tenant, SANDBOX)
    assert [e["type"] for e in sandboxed] == ["candidate.created", "mutation.succeeded"]
    assert all(e["sandbox"] for e in sandboxed)
    assert (await feed(client, tenant))[0] == []
    reset = await client.post(f"{SANDBOX}/sandbox/reset", headers=tenant.headers())
    assert (await final(client, tenant, reset.json()["data"]["mutationId"], sandbox=True))[
        "status"
    ] == "succeeded"
    assert (await feed(client, tenant, SANDBOX))[0] == []


async def test_webhook_endpoints(client: httpx.AsyncClient, tenant: Tenant, make_tenant: Any) -> None:
    body = {"url": "https://127.0.0.1:8443/hook", "events": ["candidate.created", "candidate.deleted"]}
    created = await client.post(f"{API}/webhooks", json=body, headers=tenant.headers())
    assert created.status_code == 201, created.text
    endpoint = created.json()["data"]
    assert endpoint["secret"].startswith("whsec_") and endpoint["enabled"] is True
    read = (await client.get(f"{API}/webhooks/{endpoint['id']}", headers=tenant.headers())).json()["data"]
    assert "secret" not in read and read["events"] == ["candidate.created", "candidate.deleted"]
    listed = (await client.get(f"{API}/webhooks", headers=tenant.headers())).json()["data"]
    assert [w["id"] for w in listed] == [endpoint["id"]]
    assert (await client.get(f"{SANDBOX}/webhooks", headers=tenant.headers())).json()["data"] == []
    off = await client.patch(
        f"{API}/webhooks/{endpoint['id']}", json={"enabled": False}, headers=tenant.headers()
    )
    assert off.json()["data"]["enabled"] is False and off.json()["data"]["disabledReason"]
    rotated = await client.post(f"{API}/webhooks/{endpoint['id']}/rotate-secret", headers=tenant.headers())
    assert rotated.json()["data"]["secret"] not in (endpoint["secret"], None)
    for bad, code in (
        ({**body, "url": "https://10.0.0.1/hook"}, "url_not_allowed"),
        ({**body, "url": "ftp://example.org/hook"}, "url_not_allowed"),
        ({**body, "events": ["candidate.exploded"]}, "validation_failed"),
        ({**body, "events": []}, "validation_failed"),
        ({**body, "secret": "whsec_mine"}, "validation_failed"),
    ):
        assert_error(await client.post(f"{API}/webhooks", json=bad, headers=tenant.headers()), 422, code)
    refused_changes: list[dict[str, Any]] = [{}, {"enabled": "false"}, {"url": None}]
    for change in refused_changes:
        assert_error(
            await client.patch(f"{API}/webhooks/{endpoint['id']}", json=change, headers=tenant.headers()),
            422,
            "validation_failed",
        )
    other: Tenant = await make_tenant()
    for method in ("GET", "PATCH", "DELETE"):
        answer = await client.request(
            method, f"{API}/webhooks/{endpoint['id']}", json={"enabled": True}, headers=other.headers()
        )
        assert_error(answer, 404, "not_found")
    assert (
        await client.delete(f"{API}/webhooks/{endpoint['id']}", headers=tenant.headers())
    ).status_code == 200
    assert_error(
        await client.get(f"{API}/webhooks/{endpoint['id']}", headers=tenant.headers()), 404, "not_found"
    )


async def test_events_are_kept_30_days(
    client: httpx.AsyncClient,
    tenant: Tenant,
    write_sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    await create(client, tenant, person())
    await create(client, tenant, person())
    events, _ = await feed(client, tenant)
    old = [e["id"] for e in events[:2]]  # the first candidate's events
    async with write_sessions() as session, session.begin():
        await session.execute(
            scoped(update(Event), Event, Scope(tenant.id, False))
            .where(Event.id.in_(old))
            .values(created_at=datetime.now(UTC) - timedelta(days=30, minutes=1))
        )
    await forget_old_events(write_sessions, LocalFileStore(tmp_path))
    kept, _ = await feed(client, tenant)
    assert [e["id"] for e in kept] == [e["id"] for e in events[2:]]
