"""No stored file outlives what owns it (contract §3.4): after 1,000 random adds, removals and
erasures every file in storage belongs to an attachment, and the sweeper clears what a crash or a
canceled mutation leaves behind."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onderwijsregio.attachments.apply import sweep
from onderwijsregio.attachments.models import Attachment, StagedFile
from onderwijsregio.config import Settings
from onderwijsregio.db import make_engine, make_sessionmaker
from onderwijsregio.engine.models import UNFINISHED, Mutation
from onderwijsregio.scope import Scope, scoped
from onderwijsregio.storage.files import LocalFileStore
from tests import attachment_files as files
from tests.conftest import Tenant
from tests.engine_helpers import accepted, final, until_processing
from tests.live import environment, fresh_database, run_cli, serve
from tests.receiver import Receiver, Reply
from tests.test_attachments import stored_files
from tests.test_candidates import create, person

API = "/api/v2"
Sessions = async_sessionmaker[AsyncSession]
RAISED = {"requestsPerSecond": 1000, "burst": 1000, "keyRequestsPerSecond": 1000, "keyBurst": 1000}


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
        if not self.candidates or roll < 0.07:
            response = await self._post(f"{API}/candidates", person())
            self.candidates += response["resourceIds"]
        elif roll < 0.62:
            response = await self._post(
                f"{API}/candidates/{self._pick(self.candidates)}/attachments", self._files()
            )
            self.attachments += response.get("resourceIds", [])
        elif roll < 0.97 and self.attachments:
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
    tenant: Tenant = await make_tenant(rateLimit=RAISED)
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


async def test_no_orphan_file_after_a_killed_server_finishes_its_work(tmp_path: Path) -> None:
    """A server killed (SIGKILL) in the middle of applying attachment adds: after a restart all work
    completes, and the sweeper leaves exactly the files of existing attachments."""
    storage = tmp_path / "files"
    with fresh_database(tmp_path) as database:
        env = environment(
            database,
            ONDERWIJSREGIO_STORAGE_URL=f"file://{storage}",
            ONDERWIJSREGIO_WORKERS="2",
            ONDERWIJSREGIO_ENGINE_LEASE_SECONDS="1",
            ONDERWIJSREGIO_ENGINE_POLL_SECONDS="0.2",
            ONDERWIJSREGIO_ALLOW_HTTP_URLS="true",
            ONDERWIJSREGIO_URL_ALLOWLIST="127.0.0.1",
        )
        region_id, key = run_cli(
            ["admin", "create-region", "--name", "kill"], tmp_path, env
        ).stdout.splitlines()
        admin = run_cli(["admin", "create-key", "--name", "ops"], tmp_path, env).stdout.split()[-1]
        headers = {"x-api-key": key}
        receiver = Receiver()
        slow_url = receiver.serve("/slow.pdf", Reply(200, files.pdf("slow"), delay=0.5))
        try:
            with serve(tmp_path, env) as server:
                async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                    raised = await http.patch(
                        f"/api/v2/regions/{region_id}",
                        json={"rateLimit": RAISED},
                        headers={"x-api-key": admin},
                    )
                    assert raised.status_code == 200, raised.text
                    mutations = await _attachment_burst(http, headers, slow_url)
                    await _until_some_final(http, headers, mutations, at_least=5)
                os.killpg(server.process.pid, signal.SIGKILL)
                server.process.wait()
            assert await _unfinished(database) > 0, "all work was done before the kill; nothing was tested"
            with serve(tmp_path, env) as server:
                async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                    await _until_some_final(http, headers, mutations, at_least=len(mutations))
        finally:
            receiver.close()
        database_engine = make_engine(database)
        try:
            sessions = make_sessionmaker(database_engine, write=True)
            await sweep(sessions, LocalFileStore(storage), grace=timedelta(0))
            keys, staged = await rows(sessions, Tenant({"id": region_id}, key, {}))
        finally:
            await database_engine.dispose()
    left = {p.relative_to(storage).as_posix() for p in storage.rglob("*") if p.is_file()}
    assert staged == 0 and len(keys) > 50
    assert left == keys


async def _unfinished(database: str) -> int:
    engine = make_engine(database)
    try:
        async with make_sessionmaker(engine)() as session:
            statement = select(func.count()).select_from(Mutation).where(Mutation.status.in_(UNFINISHED))
            return int(await session.scalar(statement.execution_options(cross_region=True)) or 0)
    finally:
        await engine.dispose()


async def _attachment_burst(http: httpx.AsyncClient, headers: dict[str, str], slow_url: str) -> list[str]:
    """150 adds to 5 candidates, base64 and (slowly fetched) URL files mixed; their mutation ids."""
    candidates = []
    for _ in range(5):
        created = await http.post("/api/v2/candidates", json=person(), headers=headers)
        assert created.status_code == 202, created.text
        candidates.append(created.json()["data"]["resourceIds"][0])
    mutations = []
    for n in range(150):
        attachment = (
            files.base64_input(files.pdf(str(n))) if n % 2 else {"url": slow_url, "filename": "s.pdf"}
        )
        body = {"otherAttachments": [attachment, files.base64_input(files.txt(f"bijlage {n}"))]}
        added = await http.post(
            f"/api/v2/candidates/{candidates[n % 5]}/attachments", json=body, headers=headers
        )
        assert added.status_code == 202, added.text
        mutations.append(added.json()["data"]["mutationId"])
    return mutations


async def _until_some_final(
    http: httpx.AsyncClient, headers: dict[str, str], mutations: list[str], *, at_least: int
) -> None:
    deadline = time.monotonic() + 120
    while True:
        done = 0
        for mutation_id in mutations:
            status = (await http.get(f"/api/v2/mutations/{mutation_id}", headers=headers)).json()["data"][
                "status"
            ]
            done += status in ("succeeded", "failed")
            if done >= at_least:
                return
        assert time.monotonic() < deadline, f"only {done} of {len(mutations)} mutations final"
        await asyncio.sleep(0.2)
