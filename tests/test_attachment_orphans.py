"""No stored file outlives what owns it (contract §3.4): after 1,000 random adds, removals and
erasures every file in storage belongs to an attachment, and the sweeper clears what a crash or a
canceled mutation leaves behind."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onderwijsregio.attachments.apply import sweep
from onderwijsregio.attachments.models import Attachment, StagedFile
from onderwijsregio.config import Settings
from onderwijsregio.scope import Scope, scoped
from onderwijsregio.storage.files import LocalFileStore
from tests import attachment_files as files
from tests.conftest import Tenant
from tests.engine_helpers import accepted, final, until_processing
from tests.receiver import Receiver, Reply
from tests.test_attachments import stored_files
from tests.test_candidates import create, person

API = "/api/v2"
Sessions = async_sessionmaker[AsyncSession]


async def rows(sessions: Sessions, tenant: Tenant) -> tuple[set[str], int]:
    """(storage keys of the region's attachments, how many staged files it still has)."""
    scope = Scope(tenant.id, False)
    async with sessions() as session:
        keys = set(await session.scalars(scoped(select(Attachment.storage_key), Attachment, scope)))
        staged = len((await session.scalars(scoped(select(StagedFile), StagedFile, scope))).all())
    return keys, staged


class RandomWorkload:
    """Adds (base64, a good URL, a failing URL), removals and erasures in a seeded random order."""

    def __init__(self, client: httpx.AsyncClient, tenant: Tenant, receiver: Receiver, seed: int) -> None:
        self.client, self.tenant, self.random = client, tenant, random.Random(seed)
        self.candidates: list[str] = []
        self.attachments: list[str] = []
        self.mutations: list[str] = []
        self.good_url = receiver.serve("/good.pdf", Reply(200, files.pdf("url")))
        self.bad_url = receiver.serve("/bad.exe", Reply(200, files.exe()))

    async def step(self) -> None:
        roll = self.random.random()
        if not self.candidates or roll < 0.05:
            response = await self._post(f"{API}/candidates", person())
            self.candidates += response["resourceIds"]
        elif roll < 0.6:
            response = await self._post(
                f"{API}/candidates/{self._pick(self.candidates)}/attachments", self._files()
            )
            self.attachments += response.get("resourceIds", [])
        elif roll < 0.9 and self.attachments:
            attachment = self._pick(self.attachments, remove=True)
            await self._request("DELETE", f"{API}/attachments/{attachment}")
        else:
            await self._request("DELETE", f"{API}/candidates/{self._pick(self.candidates, remove=True)}")

    def _files(self) -> dict[str, Any]:
        def one() -> dict[str, str]:
            kind = self.random.random()
            if kind < 0.7:
                return files.base64_input(files.pdf(str(self.random.random())))
            return {"url": self.good_url if kind < 0.85 else self.bad_url, "filename": "f.pdf"}

        field = self.random.choice(["curriculumVitae", "otherAttachments"])
        return {field: [one() for _ in range(self.random.randint(1, 3))]}

    def _pick(self, items: list[str], *, remove: bool = False) -> str:
        index = self.random.randrange(len(items))
        return items.pop(index) if remove else items[index]

    async def _post(self, url: str, body: Any) -> dict[str, Any]:
        return await self._request("POST", url, body)

    async def _request(self, method: str, url: str, body: Any = None) -> dict[str, Any]:
        response = await self.client.request(method, url, json=body, headers=self.tenant.headers())
        # a write to something erased meanwhile is refused at once (404): nothing queued, nothing stored
        assert response.status_code in (202, 404), response.text
        if response.status_code == 404:
            return {}
        data: dict[str, Any] = response.json()["data"]
        self.mutations.append(data["mutationId"])
        return data


async def test_a_thousand_random_operations_leave_no_orphan_file(
    client: httpx.AsyncClient, make_tenant: Any, settings: Settings, sessions: Sessions
) -> None:
    tenant: Tenant = await make_tenant(
        rateLimit={"requestsPerSecond": 1000, "burst": 1000, "keyRequestsPerSecond": 1000, "keyBurst": 1000}
    )
    receiver = Receiver()
    try:
        workload = RandomWorkload(client, tenant, receiver, seed=20261127)
        for _ in range(1000):
            await workload.step()
        outcomes = [(await final(client, tenant, m, within=120))["status"] for m in workload.mutations]
    finally:
        receiver.close()
    assert outcomes.count("failed") > 0 and outcomes.count("succeeded") > 500  # both paths ran
    keys, staged = await rows(sessions, tenant)
    assert staged == 0, "staged files outlived their mutations"
    assert len(keys) > 10
    assert {f"{tenant.id}/{name}" for name in stored_files(settings, tenant)} == keys


async def test_the_sweeper_removes_what_no_row_holds(
    client: httpx.AsyncClient, tenant: Tenant, app: FastAPI, settings: Settings, write_sessions: Sessions
) -> None:
    [cid] = await create(client, tenant, person(curriculumVitae=[files.base64_input(files.pdf())]))
    store = app.state.context.engine.files
    assert isinstance(store, LocalFileStore)
    # a file a crashed acceptance or apply left behind, and a canceled mutation's staged file
    stray = Path(store.directory) / tenant.id / "live" / "att_01STRAYSTRAYSTRAYSTRAYSTRA"
    stray.write_bytes(b"left behind")
    canceled = await cancel_an_attachment_add(client, tenant, cid)
    assert len(stored_files(settings, tenant)) == 3
    assert await sweep(write_sessions, store) == 0  # all younger than the grace period
    assert len(stored_files(settings, tenant)) == 3
    await sweep(write_sessions, store, grace=timedelta(0))
    left = stored_files(settings, tenant)
    assert len(left) == 1 and canceled not in str(left), left  # only the attachment's own file
    candidate = (await client.get(f"{API}/candidates/{cid}", headers=tenant.headers())).json()["data"]
    assert f"live/{candidate['curriculumVitae'][0]['id']}" in left


async def cancel_an_attachment_add(client: httpx.AsyncClient, tenant: Tenant, candidate_id: str) -> str:
    """An add canceled while it waits behind a slow mutation; the id of its attachment."""
    blocker = await accepted(client, tenant, [{"value": "slow", "prepareSeconds": 2}])
    await until_processing(client, tenant, blocker)
    body = {"otherAttachments": [files.base64_input(files.pdf("canceled"))]}
    response = await client.post(
        f"{API}/candidates/{candidate_id}/attachments", json=body, headers=tenant.headers()
    )
    data = response.json()["data"]
    cancel = await client.post(f"{API}/mutations/{data['mutationId']}/cancel", headers=tenant.headers())
    assert cancel.status_code == 200, cancel.text
    await final(client, tenant, blocker)
    return str(data["resourceIds"][0])
