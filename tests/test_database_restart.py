"""PostgreSQL restarted under load (contract §1.1 `service_unavailable`; §2: a 202 is never lost and
is applied exactly once), with a real server on a throwaway cluster of its own.

The shared cluster on 5432 serves other test runs at the same time, so the test makes, restarts and
drops a cluster of its own (`pg_createcluster`, trust authentication on 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import API, BACKEND
from tests.live import Server, environment, free_port, run_cli, serve

pytestmark = pytest.mark.skipif(
    BACKEND != "postgresql",
    reason="restarts a PostgreSQL server under load; SQLite has no database server to restart",
)

CLUSTER_PREFIX = "oreg_faults_"
REQUESTS = 2000
CLIENTS = 16
# No answer may take longer than this, the database away or not: a client is never left hanging.
ANSWER_WITHIN_SECONDS = 15.0
DOWN_SECONDS = 3.0
BIG_LIMITS = {
    "requestsPerSecond": 100_000,
    "burst": 100_000,
    "keyRequestsPerSecond": 100_000,
    "keyBurst": 100_000,
}


@dataclass(frozen=True)
class Cluster:
    version: str
    name: str
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/oreg"

    def ctl(self, *action: str) -> None:
        _run(["pg_ctlcluster", self.version, self.name, *action])


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}"


def _versions() -> list[str]:
    root = Path("/etc/postgresql")
    return sorted((p.name for p in root.iterdir() if p.name.isdigit()), key=int) if root.is_dir() else []


def _drop_leftovers(version: str) -> None:
    """Clusters of earlier runs whose test process is gone (killed before its clean-up)."""
    for config in Path(f"/etc/postgresql/{version}").glob(f"{CLUSTER_PREFIX}*"):
        owner = config.name.removeprefix(CLUSTER_PREFIX)
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            subprocess.run(
                ["pg_dropcluster", "--stop", version, config.name],
                capture_output=True,
                timeout=120,
                check=False,
            )


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    versions = _versions()
    if not versions or shutil.which("pg_createcluster") is None:
        pytest.skip("needs postgresql-common (pg_createcluster) to make a throwaway cluster")
    version = versions[-1]
    _drop_leftovers(version)
    made = Cluster(version, f"{CLUSTER_PREFIX}{os.getpid()}", free_port())
    # A cluster of this very process can only be one a previous test session in it left behind.
    subprocess.run(
        ["pg_dropcluster", "--stop", version, made.name], capture_output=True, timeout=120, check=False
    )
    create = ["pg_createcluster", version, made.name, "--port", str(made.port), "--start"]
    _run([*create, "--", "--auth=trust", "--no-sync"])  # trust: a throwaway cluster on 127.0.0.1 only
    try:
        asyncio.run(_create_database(made.port))
        yield made
    finally:
        subprocess.run(
            ["pg_dropcluster", "--stop", version, made.name], capture_output=True, timeout=120, check=False
        )


async def _create_database(port: int) -> None:
    connection = await asyncpg.connect(host="127.0.0.1", port=port, user="postgres", database="postgres")
    try:
        await connection.execute('CREATE DATABASE "oreg"')
    finally:
        await connection.close()


@dataclass
class Run:
    """What the clients saw: the 202 of each request, every 503, anything else; when the database was away."""

    accepted: dict[int, dict[str, Any]] = field(default_factory=dict)
    unavailable: list[httpx.Response] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    replayed: int = 0
    slowest: float = 0.0
    answered: int = 0
    down: list[tuple[float, float]] = field(default_factory=list)


def person(index: int) -> dict[str, Any]:
    return {"name": f"Herstart {index}", "email": f"restart-{index}@example.org", "privacyConsent": True}


async def test_a_database_restart_answers_503_and_loses_or_repeats_nothing(
    tmp_path: Path, cluster: Cluster
) -> None:
    env = environment(cluster.url)
    created = run_cli(["admin", "create-region", "--name", "herstart"], tmp_path, env)
    assert created.returncode == 0, created.stderr
    region_id, key = created.stdout.split()
    admin = run_cli(["admin", "create-key", "--name", "ops"], tmp_path, env).stdout.split()[-1]
    headers = {"x-api-key": key}
    with serve(tmp_path, env) as server:
        limits = {"x-api-key": admin}
        async with httpx.AsyncClient(base_url=server.url, timeout=ANSWER_WITHIN_SECONDS) as http:
            raised = await http.patch(
                f"{API}/regions/{region_id}", json={"rateLimit": BIG_LIMITS}, headers=limits
            )
            assert raised.status_code == 200, raised.text
            run = await _load_through_restarts(http, headers, cluster, server)
            _assert_answers(run, server)
            await _assert_exactly_once(http, headers, run)
        assert server.process.poll() is None, "the server process died; it must ride out the restart"
        assert "unhandled error" not in server.log(), server.log()[-5000:]


async def _load_through_restarts(
    http: httpx.AsyncClient, headers: dict[str, str], cluster: Cluster, server: Server
) -> Run:
    """2,000 creations from 16 clients; the database restarts (immediate) after about a quarter, and
    stops (immediate) for a few seconds after about two thirds. A 503 is retried, as a client would,
    with the same Idempotency-Key."""
    run = Run()
    pending = iter(range(REQUESTS))

    async def client() -> None:
        for index in pending:
            await _until_accepted(http, headers, index, run)

    async def faults() -> None:
        await _until(lambda: run.answered >= REQUESTS // 4)
        started = time.monotonic()
        await asyncio.to_thread(cluster.ctl, "restart", "-m", "immediate")
        run.down.append((started, time.monotonic()))
        await _until(lambda: run.answered >= REQUESTS * 2 // 3)
        started = time.monotonic()
        await asyncio.to_thread(cluster.ctl, "stop", "-m", "immediate")
        await asyncio.sleep(DOWN_SECONDS)
        await asyncio.to_thread(cluster.ctl, "start")
        run.down.append((started, time.monotonic()))

    fault_task = asyncio.create_task(faults())
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    await fault_task
    assert len(run.down) == 2, "the load ended before both faults; nothing was tested"
    return run


async def _until(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0.01)


async def _until_accepted(http: httpx.AsyncClient, headers: dict[str, str], index: int, run: Run) -> None:
    idempotency = {**headers, "Idempotency-Key": f"restart-{index}"}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            answer = await http.post(f"{API}/candidates", json=person(index), headers=idempotency)
        except httpx.TimeoutException:
            run.unexpected.append(f"request {index}: no answer within {ANSWER_WITHIN_SECONDS} s")
            return
        run.slowest = max(run.slowest, time.monotonic() - started)
        run.answered += 1
        if answer.status_code == 202:
            run.accepted[index] = answer.json()["data"]
            run.replayed += answer.headers.get("idempotent-replayed") == "true"
            return
        if answer.status_code != 503:
            run.unexpected.append(f"request {index}: {answer.status_code} {answer.text[:300]}")
            return
        run.unavailable.append(answer)
        await asyncio.sleep(0.2)  # a client backs off before retrying
    run.unexpected.append(f"request {index}: still refused after 120 s; the server did not recover")


def _assert_answers(run: Run, server: Server) -> None:
    assert not run.unexpected, f"{run.unexpected[:10]}\n{server.log()[-5000:]}"
    assert run.slowest < ANSWER_WITHIN_SECONDS
    assert run.unavailable, "no request met the database away; the restart tested nothing"
    for answer in run.unavailable:
        body = answer.json()
        assert body["statusCode"] == 503 and body["data"] is None, body
        assert body["error"]["code"] == "service_unavailable", body
        assert isinstance(body["message"], str) and body["message"], body
        assert body["meta"]["requestId"] == answer.headers["x-request-id"], body
        assert body["meta"]["sandboxEnabled"] is False, body
        assert not re.search(r"Traceback|asyncpg|sqlalchemy|SELECT|INSERT|/src/", answer.text), answer.text
    assert len(run.accepted) == REQUESTS


async def _assert_exactly_once(http: httpx.AsyncClient, headers: dict[str, str], run: Run) -> None:
    """Every 202's mutation succeeds (none lost); the region holds one candidate per accepted item and
    one mutation per request (none repeated, none made by a 503'd request behind the client's back)."""
    mutation_ids = {data["mutationId"] for data in run.accepted.values()}
    assert len(mutation_ids) == REQUESTS, "two requests got one mutation id"
    resource_ids = {rid for data in run.accepted.values() for rid in data["resourceIds"]}
    assert len(resource_ids) == REQUESTS
    deadline = time.monotonic() + 90
    while True:
        mutations = await _all(http, headers, f"{API}/mutations")
        statuses = {m["id"]: m["status"] for m in mutations}
        done = {mid for mid, status in statuses.items() if status in ("succeeded", "failed")}
        if mutation_ids <= done or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    assert set(statuses) == mutation_ids, "the region holds mutations no 202 told of, or misses some"
    assert {mid: statuses[mid] for mid in mutation_ids if statuses[mid] != "succeeded"} == {}
    candidates = await _all(http, headers, f"{API}/candidates")
    emails = [c["email"] for c in candidates]
    assert len(candidates) == REQUESTS, f"{len(candidates)} candidates for {REQUESTS} accepted items"
    assert len(set(emails)) == REQUESTS, "a candidate was created twice"
    assert {c["id"] for c in candidates} == resource_ids
    assert set(emails) == {person(i)["email"] for i in range(REQUESTS)}


async def _all(http: httpx.AsyncClient, headers: dict[str, str], path: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"pageSize": "100", **({"cursor": cursor} if cursor else {})}
        page = await http.get(path, params=params, headers=headers)
        assert page.status_code == 200, page.text
        items += page.json()["data"]
        cursor = page.json()["meta"]["cursor"]
        if cursor is None:
            return items
