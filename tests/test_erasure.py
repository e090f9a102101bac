"""Erasure and export (contract §3.2): after DELETE no personal data of the person remains anywhere."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onderwijsregio.config import Settings
from onderwijsregio.models import metadata
from tests import attachment_files as files
from tests.conftest import Tenant
from tests.engine_helpers import final
from tests.receiver import Receiver
from tests.test_candidates import person, run
from tests.test_envelope import assert_error

API = "/api/v2"


async def every_stored_value(sessions: async_sessionmaker[AsyncSession]) -> str:
    """Every row of every table, JSON columns included, as one text (a test-only scan of the database)."""
    texts = []
    async with sessions() as session:
        for table in metadata.sorted_tables:
            rows = await session.execute(
                text(f"SELECT * FROM {table.name}").execution_options(cross_region=True)  # noqa: S608
            )
            texts += [repr(tuple(row)) for row in rows]
    return "\n".join(texts)


def every_stored_file(settings: Settings) -> bytes:
    """Every file in the attachment storage, all regions, as one blob (a test-only scan)."""
    root = Path(settings.storage_url.removeprefix("file://"))
    return b"".join(
        path.read_bytes() + path.name.encode() for path in sorted(root.rglob("*")) if path.is_file()
    )


async def test_erasure_leaves_no_personal_data(
    client: httpx.AsyncClient, tenant: Tenant, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    marker = f"Mrk{uuid.uuid4().hex[:12]}"
    key = f"erase-{uuid.uuid4().hex}"  # the client's own token, not personal data
    receiver = Receiver()
    try:
        created = await client.post(
            f"{API}/candidates",
            params={"callbackUrl": receiver.url(), "idempotencyKey": key},
            json=[
                person(
                    name=f"Naam {marker}",
                    email=f"{marker}@example.org",
                    phone="06-87654321",
                    notes=f"notitie {marker}",
                    city=f"Stad{marker}",
                    curriculumVitae=[files.base64_input(files.txt(f"CV van {marker}"), f"cv-{marker}.txt")],
                    otherAttachments=[files.base64_input(files.pdf(marker), f"{marker}.pdf")],
                    interactions=[
                        {
                            "type": "Anders",
                            "performedAt": "2026-03-24T10:00:00Z",
                            "summary": f"gesprek {marker}",
                        }
                    ],
                )
            ],
            headers=tenant.headers(),
        )
        cid = created.json()["data"]["resourceIds"][0]
        await final(client, tenant, created.json()["data"]["mutationId"])
        await run(client, tenant, "PATCH", f"/candidates/{cid}", {"motivation": f"motivatie {marker}"})
        exported = (await client.get(f"{API}/candidates/{cid}/export", headers=tenant.headers())).json()[
            "data"
        ]
        assert exported["candidate"]["id"] == cid and exported["candidate"]["notes"] == f"notitie {marker}"
        assert [i["summary"] for i in exported["interactions"]] == [f"gesprek {marker}"]
        assert [a["filename"] for a in exported["attachments"]] == [f"cv-{marker}.txt", f"{marker}.pdf"]
        assert marker.encode() in every_stored_file(settings)
        assert [m["operation"] for m in exported["mutations"]] == ["candidates.create", "candidates.update"]
        assert marker in await every_stored_value(sessions)
        await run(client, tenant, "DELETE", f"/candidates/{cid}")
    finally:
        receiver.close()
    stored = await every_stored_value(sessions)
    assert marker not in stored and "87654321" not in stored, "personal data survived the erasure"
    assert marker.encode() not in every_stored_file(settings), "a file survived the erasure"
    assert cid in stored  # ids remain in mutations and idempotency records, as the contract allows
    assert_error(
        await client.get(f"{API}/candidates/{cid}/export", headers=tenant.headers()), 404, "not_found"
    )
    replay = await client.post(
        f"{API}/candidates",
        params={"callbackUrl": receiver.url(), "idempotencyKey": key},
        json=[person()],
        headers=tenant.headers(),
    )
    assert replay.status_code == 422  # the key is still bound to the original request: nothing re-created


async def test_export_needs_read(client: httpx.AsyncClient, tenant: Tenant) -> None:
    writer: dict[str, Any] = (
        await client.post(
            f"{API}/api-keys", json={"name": "w", "permissions": ["write"]}, headers=tenant.headers()
        )
    ).json()["data"]
    response = await client.get(
        f"{API}/candidates/cand_01ZZZZZZZZZZZZZZZZZZZZZZZZ/export", headers={"x-api-key": writer["key"]}
    )
    assert_error(response, 403, "forbidden")
