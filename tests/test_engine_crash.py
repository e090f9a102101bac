"""Crash safety (contract §2: a 202 is never lost; effects happen exactly once) with real processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, text

from onderwijsregio.db import make_engine, make_sessionmaker
from onderwijsregio.engine.accept import Submission, WriteOptions, accept, request_hash
from onderwijsregio.engine.models import Mutation
from onderwijsregio.engine.wakeup import Waker
from onderwijsregio.scope import Scope, scoped
from tests import engine_ops
from tests.conftest import BACKEND
from tests.live import environment, free_port, fresh_database, run_cli

ROOT = Path(__file__).resolve().parent.parent
WORKER = [
    sys.executable,
    "-c",
    "import tests.engine_ops; from onderwijsregio.cli import main; main(['worker'])",
]


def start(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env={**env, "PYTHONPATH": str(ROOT)},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextlib.contextmanager
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    running: list[subprocess.Popen[bytes]] = []
    try:
        yield running
    finally:
        for process in running:
            kill(process)


async def queue_mutations(database: str, scope: Scope, count: int) -> list[str]:
    engine = make_engine(database)
    sessions = make_sessionmaker(engine, write=True)
    ids = []
    try:
        for start_at in range(0, count, 100):
            async with sessions() as session, session.begin():
                for n in range(start_at, min(count, start_at + 100)):
                    submission = Submission(
                        engine_ops.OPERATION, [{"value": str(n), "applySeconds": 0.01}], []
                    )
                    acceptance = await accept(
                        session,
                        scope,
                        submission,
                        WriteOptions(),
                        fingerprint=str(n),
                        max_queued=10**9,
                        waker=Waker(),
                    )
                    ids.append(acceptance.data["mutationId"])
    finally:
        await engine.dispose()
    return ids


async def outcome(database: str, scope: Scope) -> tuple[int, int, list[tuple[str, int]], list[int]]:
    """(final mutations, all mutations, effects per mutation, change numbers)."""
    engine = make_engine(database)
    try:
        async with make_sessionmaker(engine)() as session:
            final = await session.scalar(
                scoped(select(func.count()).select_from(Mutation), Mutation, scope).where(
                    Mutation.status == "succeeded"
                )
            )
            total = await session.scalar(scoped(select(func.count()).select_from(Mutation), Mutation, scope))
            rows = (
                await session.execute(
                    select(engine_ops.Effect.mutation_id, func.count()).group_by(
                        engine_ops.Effect.mutation_id
                    )
                )
            ).all()
            changes = list(await session.scalars(select(engine_ops.Effect.change_seq)))
            return int(final or 0), int(total or 0), [(m, int(c)) for m, c in rows], sorted(changes)
    finally:
        await engine.dispose()


async def apply_transaction_open(database: str) -> bool:
    engine = make_engine(database)
    try:
        async with engine.connect() as connection:
            open_ones = await connection.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND xact_start IS NOT NULL "
                    "AND state IN ('active', 'idle in transaction')"
                )
            )
            return bool(open_ones)
    finally:
        await engine.dispose()


async def lease_holder(database: str, scope: Scope, pids: list[int], within: float) -> int | None:
    """The pid of the worker process holding the lane's lease (its name is host:pid:task)."""
    engine = make_engine(database)
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            async with engine.connect() as connection:
                holder = await connection.scalar(
                    text(
                        "SELECT locked_by FROM mutation_lanes WHERE region_id = :region AND sandbox = false"
                    ),
                    {"region": scope.region_id},
                )
            pid = int(holder.split(":")[1]) if holder else None
            if pid in pids:
                return pid
            await asyncio.sleep(0.01)
    finally:
        await engine.dispose()
    return None


@pytest.mark.skipif(BACKEND != "postgresql", reason="the crash test of the issue runs on PostgreSQL")
async def test_killed_workers_lose_nothing_and_apply_nothing_twice(tmp_path: Path) -> None:
    with fresh_database(tmp_path) as database:
        env = environment(
            database,
            ONDERWIJSREGIO_ENGINE_LEASE_SECONDS="1",
            ONDERWIJSREGIO_WORKERS="1",
            ONDERWIJSREGIO_ENGINE_POLL_SECONDS="0.2",
        )
        created = run_cli(["admin", "create-region", "--name", "crash"], tmp_path, env)
        region_id = created.stdout.splitlines()[0]
        engine = make_engine(database)
        await engine_ops.create_tables(engine)
        await engine.dispose()
        scope = Scope(region_id, False)
        ids = await queue_mutations(database, scope, 2000)
        log = tmp_path / "workers.log"
        with processes() as running:
            running += [start(WORKER, tmp_path, env, log), start(WORKER, tmp_path, env, log)]
            kills_in_transaction = 0
            for _round in range(5):
                # Both workers die at a moment an apply transaction is open: one of them was inside it.
                deadline = time.monotonic() + 20
                while not await apply_transaction_open(database) and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                in_transaction = await apply_transaction_open(database)
                for victim in running:
                    kill(victim)
                kills_in_transaction += in_transaction
                await asyncio.sleep(0.3)
                running[:] = [start(WORKER, tmp_path, env, log), start(WORKER, tmp_path, env, log)]
            frozen = 0
            for _round in range(2):
                # The lease holder freezes past its lease; the other takes over; the first wakes up and
                # must find its lease gone (never applying its batch a second time).
                holder = await lease_holder(database, scope, [p.pid for p in running], within=20)
                if holder is None:
                    continue
                os.kill(holder, signal.SIGSTOP)
                await asyncio.sleep(2.5)
                os.kill(holder, signal.SIGCONT)
                frozen += 1
            deadline = time.monotonic() + 180
            while (await outcome(database, scope))[0] < len(ids):
                assert time.monotonic() < deadline, f"not all final in time:\n{log.read_text()[-3000:]}"
                await asyncio.sleep(0.5)
        final, total, per_mutation, changes = await outcome(database, scope)
        assert kills_in_transaction >= 1
        assert frozen >= 1, "no lease holder could be frozen"
        assert final == total == 2000, "lost or unfinished mutations"
        assert len(per_mutation) == 2000 and all(count == 1 for _, count in per_mutation), "applied twice"
        assert changes == list(range(1, 2001)), "the change sequence has gaps or repeats"


async def test_a_killed_api_lost_no_accepted_write(tmp_path: Path) -> None:
    """Every 202 has its mutation; resending everything with the same keys makes one mutation each."""
    with fresh_database(tmp_path) as database:
        env = environment(database)
        created = run_cli(["admin", "create-region", "--name", "burst"], tmp_path, env)
        region_id, key = created.stdout.splitlines()
        admin = run_cli(["admin", "create-key", "--name", "ops"], tmp_path, env).stdout.strip()
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        keys = [f"burst-{uuid.uuid4().hex}" for _ in range(300)]
        with processes() as running:
            running.append(await _start_api(port, tmp_path, env))
            async with httpx.AsyncClient(base_url=url, timeout=10) as http:
                raised = {
                    "requestsPerSecond": 10000,
                    "burst": 10000,
                    "keyRequestsPerSecond": 10000,
                    "keyBurst": 10000,
                }
                await http.patch(
                    f"/api/v2/regions/{region_id}", json={"rateLimit": raised}, headers={"x-api-key": admin}
                )
                tasks = [asyncio.create_task(_send(http, key, k)) for k in keys]
                deadline = time.monotonic() + 30
                while sum(t.done() for t in tasks) < 30 and time.monotonic() < deadline:
                    await asyncio.sleep(0.005)
                kill(running.pop())  # mid-burst: some requests answered, others in flight or not sent
                answers = await asyncio.gather(*tasks, return_exceptions=True)
            got_202 = {k: a for k, a in zip(keys, answers, strict=True) if isinstance(a, str)}
            assert got_202, "the API was killed before any answer; nothing was tested"
            assert len(got_202) < len(keys), "the API answered everything before it was killed"
            running.append(await _start_api(port, tmp_path, env))
            async with httpx.AsyncClient(base_url=url, timeout=10) as http:
                again = await asyncio.gather(*(_send(http, key, k) for k in keys))
        for idempotency_key, mutation_id in got_202.items():
            assert again[keys.index(idempotency_key)] == mutation_id, "a 202 was lost"
        counts = await _mutations_per_key(database, Scope(region_id, False))
        assert sorted(counts) == sorted(keys)
        assert all(count == 1 for count in counts.values())


async def _send(http: httpx.AsyncClient, key: str, idempotency_key: str) -> str:
    response = await http.post(
        "/api/v2/test-records",
        json=[{"value": idempotency_key}],
        params={"idempotencyKey": idempotency_key},
        headers={"x-api-key": key},
    )
    assert response.status_code == 202, response.text
    mutation_id: str = response.json()["data"]["mutationId"]
    return mutation_id


async def _start_api(port: int, workdir: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The API with the tests' write route and no workers, started and answering."""
    api = start(
        [sys.executable, "-m", "tests.serve_with_test_route", str(port)], workdir, env, workdir / "api.log"
    )
    await _healthy(f"http://127.0.0.1:{port}")
    return api


async def _healthy(url: str) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(base_url=url, timeout=1) as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get("/health")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise AssertionError("the API did not start")


async def _mutations_per_key(database: str, scope: Scope) -> dict[str, int]:
    engine = make_engine(database)
    try:
        async with make_sessionmaker(engine)() as session:
            rows = await session.execute(
                scoped(select(Mutation.idempotency_key, func.count()), Mutation, scope).group_by(
                    Mutation.idempotency_key
                )
            )
            return {str(k): int(c) for k, c in rows}
    finally:
        await engine.dispose()


def test_request_fingerprints_compare_what_makes_requests_the_same() -> None:
    secret = b"k" * 32
    base = request_hash(secret, "POST", "/api/v2/x", [("callbackUrl", "a")], b'{"a":1,"b":2}')
    assert base == request_hash(secret, "POST", "/api/v2/x", [("callbackUrl", "a")], b'{ "b": 2, "a" : 1 }')
    assert base != request_hash(secret, "POST", "/api/v2/x", [("callbackUrl", "b")], b'{"a":1,"b":2}')
    assert base != request_hash(secret, "PATCH", "/api/v2/x", [("callbackUrl", "a")], b'{"a":1,"b":2}')
    assert base != request_hash(secret, "POST", "/api/v2/y", [("callbackUrl", "a")], b'{"a":1,"b":2}')
    # keyed: without the server's secret, a short body cannot be guessed back from its fingerprint
    assert base != request_hash(b"x" * 32, "POST", "/api/v2/x", [("callbackUrl", "a")], b'{"a":1,"b":2}')
