"""Mutation Engine benchmark: accept rate, apply rate, idle end-to-end latency, raw INSERT rate.

    .venv/bin/python bench/engine_bench.py --database sqlite
    .venv/bin/python bench/engine_bench.py --database postgresql

Everything is measured in one run against real processes on 127.0.0.1 (see bench/README.md):

1. accept: POST /api/v2/test-records (1 item) from 32 concurrent httpx tasks against a server
   started without workers; 202/s and latency p50/p99.
2. raw: single-row INSERT+COMMIT on a small table of the same database (32 asyncpg connections on
   PostgreSQL, 1 aiosqlite connection on SQLite); accept rate as a fraction of it.
3. apply: a backlog of 1-item, then of 10-item mutations, drained by a separate `onderwijsregio
   worker` process; item rows applied per second, watching the `mutations` table with SQL.
4. end-to-end: one request at a time against a server with one in-process worker; from the 202 to
   the moment the mutation's row reads `succeeded`.

Each figure is the median of --runs runs. Every process started here is stopped at the end (its whole
process group), also after an error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python bench/engine_bench.py`: only bench/ is on the path
    sys.path.insert(0, str(ROOT))

from bench.loadgen import percentile  # noqa: E402

PYTHON = Path(sys.executable)
HOST = "127.0.0.1"
PG_ADMIN_DATABASE = "postgres"  # only for CREATE/DROP DATABASE
PG_BENCH_DATABASE = "oreg_bench"
WRITE_PATH = "/api/v2/test-records"  # tests/test_routes.py, added by bench/bench_ops.py
API = "/api/v2"
RAISED_LIMITS: dict[str, Any] = {
    "rateLimit": {
        "requestsPerSecond": 100_000,
        "burst": 100_000,
        "keyRequestsPerSecond": 100_000,
        "keyBurst": 100_000,
    },
    "maxQueuedMutations": 10_000_000,
}
# Direct SQL on the project's `mutations` table (written with `?`; see Probe).
COUNT_FINAL = (
    "SELECT count(*) FROM mutations WHERE region_id = ? AND seq > ? AND status IN ('succeeded', 'failed')"
)
# count, rows, failed rows, seconds from the first claim to the last completion, of a range of seqs
APPLIED = {
    "sqlite": "SELECT count(*), sum(succeeded_count + failed_count), sum(failed_count), "
    "(julianday(max(completed_at)) - julianday(min(started_at))) * 86400.0 "
    "FROM mutations WHERE region_id = ? AND seq > ? AND seq <= ?",
    "postgresql": "SELECT count(*), sum(succeeded_count + failed_count), sum(failed_count), "
    "extract(epoch FROM max(completed_at) - min(started_at)) "
    "FROM mutations WHERE region_id = ? AND seq > ? AND seq <= ?",
}
STATUS = "SELECT status FROM mutations WHERE region_id = ? AND sandbox = ? AND id = ?"
# seconds from acceptance to completion of one mutation, by the table's own timestamps
ACCEPTED_TO_COMPLETED = {
    "sqlite": "SELECT (julianday(completed_at) - julianday(created_at)) * 86400.0 "
    "FROM mutations WHERE region_id = ? AND sandbox = ? AND id = ?",
    "postgresql": "SELECT extract(epoch FROM completed_at - created_at) "
    "FROM mutations WHERE region_id = ? AND sandbox = ? AND id = ?",
}
SERVE_CODE = "import bench.bench_ops as b; b.serve({port}, run_workers={workers})"
WORKER_CODE = "import tests.engine_ops; from onderwijsregio.cli import main; main(['worker'])"
CREATE_TABLES_CODE = "import bench.bench_ops as b; b.create_tables()"
WORKER_READY_LOG = "worker running with"
EFFECTS_TABLE = "engine_test_effects"  # tests/engine_ops.py: one row per applied item
COUNT_EFFECTS = "SELECT count(*) FROM engine_test_effects WHERE region_id = ?"


class BenchError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# processes


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Children:
    """Every process this benchmark starts, each in its own process group; stop_all() ends them all."""

    workdir: Path
    env: dict[str, str]
    running: list[Child] = field(default_factory=list)
    counter: int = 0

    def start(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> Child:
        self.counter += 1
        log_path = self.workdir / f"{self.counter:02d}-{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                argv,
                cwd=self.workdir,
                env={**self.env, **(extra_env or {})},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child = Child(name, process, log_path)
        self.running.append(child)
        return child

    def stop(self, child: Child, timeout: float = 15.0) -> None:
        if child.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, signal.SIGTERM)
            try:
                child.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait()
        # the group may hold stragglers even when its leader is gone
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.process.pid, signal.SIGKILL)
        if child in self.running:
            self.running.remove(child)

    def stop_all(self) -> None:
        for child in list(reversed(self.running)):
            self.stop(child)

    def run(self, name: str, argv: list[str], timeout: float = 120.0) -> str:
        """A short command to completion; its standard output."""
        child = self.start(name, argv)
        try:
            code = child.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(child)
            raise BenchError(f"{name} did not finish in {timeout:.0f} s:\n{child.log_tail()}") from None
        self.stop(child)
        if code != 0:
            raise BenchError(f"{name} exited with {code}:\n{child.log_tail()}")
        return child.log_path.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def python_code(code: str) -> list[str]:
    return [str(PYTHON), "-c", code]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------
# the database, and direct SQL on it


@dataclass
class Database:
    kind: str  # "sqlite" or "postgresql"
    url: str  # ONDERWIJSREGIO_DATABASE_URL
    sqlite_path: Path | None = None
    pg_port: int = 5432

    async def connect(self) -> Probe:
        if self.kind == "sqlite":
            assert self.sqlite_path is not None
            connection = await aiosqlite.connect(self.sqlite_path, isolation_level=None)
            await connection.execute("PRAGMA busy_timeout=30000")
            return Probe(self.kind, sqlite=connection)
        return Probe(self.kind, pg=await pg_connect(self.pg_port, PG_BENCH_DATABASE))

    async def describe(self) -> str:
        probe = await self.connect()
        try:
            if self.kind == "sqlite":
                return f"SQLite {await probe.value('SELECT sqlite_version()')} (file in a temp dir)"
            version = await probe.value("SHOW server_version")
            return f"PostgreSQL {version} at {HOST}:{self.pg_port}, database {PG_BENCH_DATABASE}"
        finally:
            await probe.close()


async def pg_connect(port: int, database: str) -> Any:
    return await asyncpg.connect(host=HOST, port=port, user="postgres", database=database)


async def recreate_pg_database(port: int, database: str = PG_BENCH_DATABASE) -> None:
    try:
        admin = await pg_connect(port, PG_ADMIN_DATABASE)
    except (OSError, asyncpg.PostgresError) as error:
        raise BenchError(f"PostgreSQL at {HOST}:{port} (user postgres): {error}") from None
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()


@dataclass
class Probe:
    """One connection of our own: SQL written with `?` placeholders runs on either database."""

    kind: str
    sqlite: aiosqlite.Connection | None = None
    pg: Any = None

    def _sql(self, sql: str) -> str:
        if self.kind == "sqlite":
            return sql
        parts = sql.split("?")
        return "".join(part + (f"${n}" if n < len(parts) else "") for n, part in enumerate(parts, 1))

    async def value(self, sql: str, *args: Any) -> Any:
        if self.sqlite is not None:
            async with self.sqlite.execute(sql, args) as cursor:
                row = await cursor.fetchone()
            return None if row is None else row[0]
        return await self.pg.fetchval(self._sql(sql), *args)

    async def row(self, sql: str, *args: Any) -> tuple[Any, ...]:
        if self.sqlite is not None:
            async with self.sqlite.execute(sql, args) as cursor:
                found = await cursor.fetchone()
            return tuple(found) if found is not None else ()
        record = await self.pg.fetchrow(self._sql(sql), *args)
        return tuple(record) if record is not None else ()

    async def execute(self, sql: str, *args: Any) -> None:
        if self.sqlite is not None:
            await self.sqlite.execute(sql, args)
        else:
            await self.pg.execute(self._sql(sql), *args)

    async def close(self) -> None:
        if self.sqlite is not None:
            await self.sqlite.close()
        if self.pg is not None:
            await self.pg.close()


# ---------------------------------------------------------------------------------------------
# figures


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies: list[float]
    statuses: Counter[int]
    server_cpu: float  # seconds of CPU the server process used meanwhile
    client_cpu: float  # seconds of CPU this process used meanwhile

    def cpu_ms(self, seconds: float) -> float:
        return seconds / max(1, self.accepted) * 1000

    @property
    def accepted(self) -> int:
        return self.statuses.get(202, 0)

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds

    def describe(self) -> str:
        others = {code: n for code, n in self.statuses.items() if code != 202}
        text = (
            f"{self.accepted} x 202 in {self.seconds:.2f} s = {self.rate:.0f}/s, "
            f"p50 {percentile(self.latencies, 0.5) * 1000:.1f} ms, "
            f"p99 {percentile(self.latencies, 0.99) * 1000:.1f} ms; CPU per request: server "
            f"{self.cpu_ms(self.server_cpu):.1f} ms ({self.server_cpu / self.seconds:.0%} of a core), "
            f"load generator {self.cpu_ms(self.client_cpu):.1f} ms"
        )
        return text + (f", NOT 202: {others}" if others else "")


@dataclass
class ApplyResult:
    mutations: int
    rows: int
    failed: int
    seconds: float  # worker ready -> all final
    wall_seconds: float  # worker process spawned -> all final
    db_seconds: float  # first claim (min started_at) -> last completed_at, from the table
    worker_cpu: float  # seconds of CPU the worker process used from ready to done

    @property
    def rate(self) -> float:
        return self.rows / self.seconds

    def describe(self) -> str:
        return (
            f"{self.mutations} mutations, {self.rows} rows ({self.failed} failed) in {self.seconds:.2f} s "
            f"= {self.rate:.0f} rows/s ({self.mutations / self.seconds:.0f} mutations/s); "
            f"{self.wall_seconds:.2f} s with start-up; table timestamps span {self.db_seconds:.2f} s; "
            f"worker CPU {self.worker_cpu / self.seconds:.0%} of a core"
        )


@dataclass
class Figures:
    accept: list[LoadResult] = field(default_factory=list)
    accept10: list[LoadResult] = field(default_factory=list)
    raw: list[float] = field(default_factory=list)
    apply1: list[ApplyResult] = field(default_factory=list)
    apply10: list[ApplyResult] = field(default_factory=list)
    e2e: list[list[float]] = field(default_factory=list)  # 202 -> seen succeeded
    e2e_from_send: list[list[float]] = field(default_factory=list)  # request sent -> seen succeeded
    e2e_server: list[list[float]] = field(default_factory=list)  # completed_at - created_at


# ---------------------------------------------------------------------------------------------
# the benchmark


@dataclass
class Options:
    database: str
    runs: int
    concurrency: int
    accepts: int
    apply_mutations: int
    raw_inserts: int
    latency_samples: int
    warmup: int
    pg_port: int
    json_path: Path | None
    keep_temp: bool
    failing_every: int = 0


@dataclass
class Tenant:
    region_id: str
    region_key: str
    admin_key: str


class Bench:
    def __init__(self, options: Options, children: Children, database: Database) -> None:
        self.options = options
        self.database = database
        self.children = children
        children.env = self._environment()
        self.figures = Figures()
        self.tenant: Tenant | None = None
        self.probe: Probe | None = None
        self.drained_seq = 0  # every mutation up to this seq is final
        self.succeeded_rows = 0  # item rows of every drained mutation that succeeded

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ONDERWIJSREGIO_")}
        path = [str(ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        env.update(
            ONDERWIJSREGIO_DATABASE_URL=self.database.url,
            ONDERWIJSREGIO_SECRET_KEY=secrets.token_urlsafe(32),  # one for every process
            ONDERWIJSREGIO_RATE_LIMIT_STORAGE="memory://",
            ONDERWIJSREGIO_ENV="production",
            PYTHONPATH=os.pathsep.join(path),
            PYTHONUNBUFFERED="1",
        )
        return env

    # -- set-up --------------------------------------------------------------------------------

    def cli(self, *args: str) -> list[str]:
        return self.children.run(f"cli-{args[1]}", [str(PYTHON.with_name("onderwijsregio")), *args]).split()

    def set_up(self) -> None:
        lines = self.cli("admin", "create-region", "--name", "bench")
        region_id, region_key = lines[-2], lines[-1]
        admin_key = self.cli("admin", "create-key", "--name", "bench")[-1]
        if not region_id.startswith("reg_"):
            raise BenchError(f"create-region printed {lines!r}")
        self.tenant = Tenant(region_id, region_key, admin_key)
        self.children.run("create-tables", python_code(CREATE_TABLES_CODE))
        say(f"region {region_id} and its key created with the CLI; an admin key too")

    def start_server(self, run_workers: bool) -> tuple[Child, str]:
        port = free_port()
        code = SERVE_CODE.format(port=port, workers=run_workers)
        name = "server-with-worker" if run_workers else "server-no-worker"
        child = self.children.start(name, python_code(code), {"ONDERWIJSREGIO_WORKERS": "1"})
        base = f"http://{HOST}:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if child.process.poll() is not None:
                raise BenchError(f"{name} exited during start-up:\n{child.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    return child, base
            time.sleep(0.05)
        raise BenchError(f"{name} did not become healthy:\n{child.log_tail()}")

    async def raise_limits(self, base: str) -> None:
        tenant = self.require_tenant()
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            answer = await client.patch(
                f"{API}/regions/{tenant.region_id}",
                json=RAISED_LIMITS,
                headers={"x-api-key": tenant.admin_key},
            )
        if answer.status_code != 200:
            raise BenchError(f"PATCH /regions/{tenant.region_id}: {answer.status_code} {answer.text}")
        data = answer.json()["data"]
        limits = ", ".join(f"{k}={v}" for k, v in data["rateLimit"].items())
        say(f"region rate limits raised: {limits}, maxQueuedMutations={data['maxQueuedMutations']}")

    def require_tenant(self) -> Tenant:
        if self.tenant is None:
            raise BenchError("no tenant yet")
        return self.tenant

    def require_probe(self) -> Probe:
        if self.probe is None:
            raise BenchError("no database connection yet")
        return self.probe

    # -- accept ----------------------------------------------------------------------------------

    def client(self, base: str, connections: int) -> httpx.AsyncClient:
        # Idle connections are dropped after 2 s, before the server's 5 s keep-alive ends them: a
        # connection the server closes just as a request goes out fails that request (ReadError),
        # which a drain lasting about 5 s made happen.
        limits = httpx.Limits(
            max_connections=connections, max_keepalive_connections=connections, keepalive_expiry=2.0
        )
        headers = {"x-api-key": self.require_tenant().region_key}
        return httpx.AsyncClient(base_url=base, limits=limits, timeout=120, headers=headers)

    async def load(
        self, client: httpx.AsyncClient, server: Child, requests: int, items: int, tag: str
    ) -> LoadResult:
        """`requests` POSTs from `concurrency` tasks, each sending its next request when answered."""
        numbers = iter(range(requests))
        latencies: list[float] = []
        statuses: Counter[int] = Counter()

        async def task() -> None:
            for number in numbers:
                body: list[dict[str, str]] = [{"value": f"{tag}-{number}-{item}"} for item in range(items)]
                if self.options.failing_every and number % self.options.failing_every == 0:
                    body[-1]["fail"] = "permanent"  # the operation refuses the item when it is applied
                sent = time.perf_counter()
                answer = await client.post(WRITE_PATH, json=body)
                latencies.append(time.perf_counter() - sent)
                statuses[answer.status_code] += 1

        server_cpu, client_cpu = cpu_seconds(server.process.pid), time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(task() for _ in range(self.options.concurrency)))
        seconds = time.perf_counter() - started
        server_cpu = cpu_seconds(server.process.pid) - server_cpu
        return LoadResult(
            requests, seconds, latencies, statuses, server_cpu, time.process_time() - client_cpu
        )

    # -- raw inserts -------------------------------------------------------------------------------

    async def create_raw_table(self) -> None:
        probe = self.require_probe()
        if self.database.kind == "sqlite":
            table = "id INTEGER PRIMARY KEY AUTOINCREMENT, payload TEXT NOT NULL, created_at TEXT NOT NULL"
        else:
            table = "id BIGSERIAL PRIMARY KEY, payload TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL"
        await probe.execute(f"CREATE TABLE IF NOT EXISTS bench_raw_inserts ({table})")

    async def raw_insert_rate(self, run: int) -> float:
        if self.database.kind == "sqlite":
            return await self._raw_sqlite(run)
        return await self._raw_postgresql(run)

    async def _raw_sqlite(self, run: int) -> float:
        """One connection with the project's pragmas; BEGIN IMMEDIATE, INSERT, COMMIT per row."""
        assert self.database.sqlite_path is not None
        connection = await aiosqlite.connect(self.database.sqlite_path, isolation_level=None)
        try:
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000"):
                await connection.execute(f"PRAGMA {pragma}")
            started = time.perf_counter()
            for number in range(self.options.raw_inserts):
                await connection.execute("BEGIN IMMEDIATE")
                await connection.execute(
                    "INSERT INTO bench_raw_inserts (payload, created_at) VALUES (?, ?)",
                    (f"raw-{run}-{number}", _now_text()),
                )
                await connection.execute("COMMIT")
            return self.options.raw_inserts / (time.perf_counter() - started)
        finally:
            await connection.close()

    async def _raw_postgresql(self, run: int) -> float:
        """`concurrency` connections, each INSERT its own transaction (autocommit)."""
        connections = [
            await pg_connect(self.database.pg_port, PG_BENCH_DATABASE)
            for _ in range(self.options.concurrency)
        ]
        numbers = iter(range(self.options.raw_inserts))

        async def task(connection: Any) -> None:
            for number in numbers:
                await connection.execute(
                    "INSERT INTO bench_raw_inserts (payload, created_at) VALUES ($1, now())",
                    f"raw-{run}-{number}",
                )

        try:
            started = time.perf_counter()
            await asyncio.gather(*(task(c) for c in connections))
            return self.options.raw_inserts / (time.perf_counter() - started)
        finally:
            for connection in connections:
                await connection.close()

    # -- apply -----------------------------------------------------------------------------------

    async def max_seq(self) -> int:
        value = await self.require_probe().value(
            "SELECT max(seq) FROM mutations WHERE region_id = ?", self.require_tenant().region_id
        )
        return int(value or 0)

    async def final_after(self, after_seq: int) -> int:
        value = await self.require_probe().value(
            COUNT_FINAL,
            self.require_tenant().region_id,
            after_seq,
        )
        return int(value or 0)

    async def drain(self, label: str) -> ApplyResult:
        """Starts a worker process on the queued backlog; waits (polling SQL) until all of it is final."""
        after, through = self.drained_seq, await self.max_seq()
        backlog = through - after
        if await self.final_after(after) != 0:
            raise BenchError("mutations were applied while no worker ran")
        spawned = time.perf_counter()
        worker = self.children.start(
            f"worker-{label}", python_code(WORKER_CODE), {"ONDERWIJSREGIO_WORKERS": "1"}
        )
        ready: float | None = None
        ready_cpu = 0.0
        deadline = spawned + max(120.0, backlog / 20)
        try:
            while True:
                now = time.perf_counter()
                if ready is None and WORKER_READY_LOG in worker.log_path.read_text(errors="replace"):
                    ready, ready_cpu = now, cpu_seconds(worker.process.pid)
                if await self.final_after(after) >= backlog:
                    done, done_cpu = time.perf_counter(), cpu_seconds(worker.process.pid)
                    break
                if worker.process.poll() is not None:
                    raise BenchError(f"worker exited early:\n{worker.log_tail()}")
                if now > deadline:
                    raise BenchError(f"backlog not applied in time:\n{worker.log_tail()}")
                await asyncio.sleep(0.01)
        finally:
            self.children.stop(worker)
        if ready is None:
            say("  (the worker's start-up log line was not seen; timing from process spawn)")
            ready = spawned
        self.drained_seq = through
        result = await self._apply_result(after, through, done - ready, done - spawned, done_cpu - ready_cpu)
        await self._check_effects(result)
        return result

    async def _check_effects(self, result: ApplyResult) -> None:
        """Every succeeded item wrote exactly one row of the operation's own table."""
        self.succeeded_rows += result.rows - result.failed
        effects = await self.require_probe().value(COUNT_EFFECTS, self.require_tenant().region_id)
        if int(effects) != self.succeeded_rows:
            raise BenchError(f"{effects} rows in {EFFECTS_TABLE}, expected {self.succeeded_rows}")

    async def _apply_result(
        self, after: int, through: int, seconds: float, wall: float, cpu: float
    ) -> ApplyResult:
        mutations, rows, failed, db_seconds = await self.require_probe().row(
            APPLIED[self.database.kind],
            self.require_tenant().region_id,
            after,
            through,
        )
        return ApplyResult(
            int(mutations), int(rows or 0), int(failed or 0), seconds, wall, float(db_seconds or 0), cpu
        )

    # -- end to end --------------------------------------------------------------------------------

    async def end_to_end(self, client: httpx.AsyncClient, samples: int, tag: str) -> tuple[list[float], ...]:
        """One request at a time on an idle server; the mutation row polled until it is final."""
        probe, tenant = self.require_probe(), self.require_tenant()
        from_202: list[float] = []
        from_send: list[float] = []
        server_side: list[float] = []
        for number in range(samples):
            await asyncio.sleep(0.02)  # let the worker go idle again
            sent = time.perf_counter()
            answer = await client.post(WRITE_PATH, json=[{"value": f"{tag}-{number}"}])
            accepted = time.perf_counter()
            if answer.status_code != 202:
                raise BenchError(f"end-to-end request answered {answer.status_code}: {answer.text}")
            mutation_id = answer.json()["data"]["mutationId"]
            deadline = accepted + 30
            while True:
                status = await probe.value(
                    STATUS,
                    tenant.region_id,
                    False,
                    mutation_id,
                )
                if status in ("succeeded", "failed"):
                    seen = time.perf_counter()
                    break
                if time.perf_counter() > deadline:
                    raise BenchError(f"mutation {mutation_id} still {status} after 30 s")
                await asyncio.sleep(0.0005)
            if status != "succeeded":
                raise BenchError(f"mutation {mutation_id} {status}")
            from_202.append(seen - accepted)
            from_send.append(seen - sent)
            server_side.append(
                float(
                    await probe.value(
                        ACCEPTED_TO_COMPLETED[self.database.kind],
                        tenant.region_id,
                        False,
                        mutation_id,
                    )
                )
            )
        return from_202, from_send, server_side

    # -- the whole run -----------------------------------------------------------------------------

    async def run(self) -> None:
        opts = self.options
        self.set_up()
        self.probe = await self.database.connect()
        await self.create_raw_table()

        say("\n== phase 1: server without workers (accept, raw inserts, apply by a worker process)")
        server, base = self.start_server(run_workers=False)
        say(f"server pid {server.process.pid} on {base}")
        await self.raise_limits(base)
        async with self.client(base, opts.concurrency) as client:
            if opts.warmup:
                warm = await self.load(client, server, opts.warmup, 1, "warmup")
                say(f"warm-up: {warm.describe()}")
                if warm.accepted != opts.warmup:
                    raise BenchError("warm-up requests were refused; see above")
                warm_apply = await self.drain("warmup")
                say(f"warm-up backlog applied: {warm_apply.describe()}")
            for run in range(1, opts.runs + 1):
                say(f"-- run {run}/{opts.runs}")
                accept = await self.load(client, server, opts.accepts, 1, f"a{run}")
                self.figures.accept.append(accept)
                say(f"  accept 1-item   : {accept.describe()}")
                raw = await self.raw_insert_rate(run)
                self.figures.raw.append(raw)
                say(f"  raw INSERT+COMMIT: {raw:.0f}/s -> accept is {accept.rate / raw:.1%} of it")
                apply1 = await self.drain(f"r{run}-1item")
                self.figures.apply1.append(apply1)
                say(f"  apply 1-item    : {apply1.describe()}")
                accept10 = await self.load(client, server, opts.apply_mutations, 10, f"t{run}")
                self.figures.accept10.append(accept10)
                say(f"  accept 10-item  : {accept10.describe()}")
                apply10 = await self.drain(f"r{run}-10item")
                self.figures.apply10.append(apply10)
                say(f"  apply 10-item   : {apply10.describe()}")
        self.children.stop(server)

        say("\n== phase 2: server with one in-process worker (idle end-to-end latency)")
        server, base = self.start_server(run_workers=True)
        say(f"server pid {server.process.pid} on {base}")
        async with self.client(base, 1) as client:
            await self.end_to_end(client, 5, "e2e-warmup")
            for run in range(1, opts.runs + 1):
                from_202, from_send, server_side = await self.end_to_end(
                    client, opts.latency_samples, f"e{run}"
                )
                self.figures.e2e.append(from_202)
                self.figures.e2e_from_send.append(from_send)
                self.figures.e2e_server.append(server_side)
                say(
                    f"  run {run}: 202 -> succeeded p50 {percentile(from_202, 0.5) * 1000:.1f} ms, "
                    f"p99 {percentile(from_202, 0.99) * 1000:.1f} ms "
                    f"(send -> succeeded p50 {percentile(from_send, 0.5) * 1000:.1f} ms; "
                    f"created_at -> completed_at p50 {percentile(server_side, 0.5) * 1000:.1f} ms)"
                )
        self.children.stop(server)

    async def close(self) -> None:
        if self.probe is not None:
            await self.probe.close()
            self.probe = None


def _now_text() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())


def say(text: str) -> None:
    print(text, flush=True)


# ---------------------------------------------------------------------------------------------
# the summary


def med(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def runs_text(values: list[float], fmt: str) -> str:
    return " ".join(format(v, fmt) for v in values)


def summary(figures: Figures, options: Options, described: str) -> tuple[str, dict[str, Any]]:
    """The table of medians (and every run's value), and the same as data for --json."""
    ms = 1000.0

    def p(samples: list[list[float]], fraction: float) -> list[float]:
        return [percentile(s, fraction) * ms for s in samples]

    accept, accept10 = figures.accept, figures.accept10
    concurrency = options.concurrency
    rows: list[tuple[str, list[float], str, str]] = [
        (f"accept rate, 1 item, c={concurrency}, no workers", [r.rate for r in accept], "202/s", ".0f"),
        ("  latency p50", p([r.latencies for r in accept], 0.5), "ms", ".1f"),
        ("  latency p99", p([r.latencies for r in accept], 0.99), "ms", ".1f"),
        ("  server CPU per accept", [r.cpu_ms(r.server_cpu) for r in accept], "ms", ".1f"),
        ("  load generator CPU per request", [r.cpu_ms(r.client_cpu) for r in accept], "ms", ".1f"),
        (f"accept rate, 10 items, c={concurrency}, no workers", [r.rate for r in accept10], "202/s", ".0f"),
        ("raw single-row INSERT+COMMIT", figures.raw, "rows/s", ".0f"),
        (
            "accept rate / raw INSERT rate",
            [a.rate / raw * 100 for a, raw in zip(accept, figures.raw, strict=True)],
            "%",
            ".2f",
        ),
        ("apply rate, 1-item mutations", [r.rate for r in figures.apply1], "rows/s", ".0f"),
        ("apply rate, 10-item mutations", [r.rate for r in figures.apply10], "rows/s", ".0f"),
        ("  in mutations", [r.mutations / r.seconds for r in figures.apply10], "mut/s", ".0f"),
        ("idle end-to-end, 202 -> succeeded, p50", p(figures.e2e, 0.5), "ms", ".1f"),
        ("idle end-to-end, 202 -> succeeded, p99", p(figures.e2e, 0.99), "ms", ".1f"),
        ("  request sent -> succeeded, p50", p(figures.e2e_from_send, 0.5), "ms", ".1f"),
        ("  created_at -> completed_at (table), p50", p(figures.e2e_server, 0.5), "ms", ".1f"),
    ]
    lines = [
        "",
        f"== results: medians of {options.runs} runs ({described})",
        f"   per run: {options.accepts} 1-item accepts (then applied), {options.apply_mutations} 10-item "
        f"mutations, {options.raw_inserts} raw inserts, {options.latency_samples} end-to-end samples",
    ]
    width = max(len(name) for name, *_ in rows)
    data: dict[str, Any] = {}
    for name, values, unit, fmt in rows:
        lines.append(f"{name:<{width}}  {med(values):>9{fmt}} {unit:<6}  runs: {runs_text(values, fmt)}")
        data[name.strip()] = {"median": med(values), "unit": unit, "runs": values}
    document = {
        "database": options.database,
        "described": described,
        "options": {k: str(v) for k, v in vars(options).items()},
        "figures": data,
    }
    return "\n".join(lines), document


# ---------------------------------------------------------------------------------------------
# main


def parse(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", choices=("sqlite", "postgresql"), required=True)
    parser.add_argument("--runs", type=int, default=3, help="runs per figure; medians are reported (>= 3)")
    parser.add_argument(
        "--concurrency", type=int, default=32, help="concurrent HTTP tasks (and PG connections)"
    )
    parser.add_argument(
        "--accepts", type=int, default=1000, help="1-item accepts per run (then the 1-item apply backlog)"
    )
    parser.add_argument("--apply-mutations", type=int, default=300, help="10-item mutations per apply run")
    parser.add_argument("--raw-inserts", type=int, default=2000, help="raw INSERT+COMMITs per run")
    parser.add_argument("--latency-samples", type=int, default=100, help="end-to-end samples per run")
    parser.add_argument("--warmup", type=int, default=200, help="1-item accepts before the first run")
    parser.add_argument("--pg-port", type=int, default=5432, help="PostgreSQL on 127.0.0.1 (user postgres)")
    parser.add_argument(
        "--failing-every",
        type=int,
        default=0,
        help="give every Nth write (warm-up included) an item that fails when applied (0: none)",
    )
    parser.add_argument("--json", dest="json_path", type=Path, help="also write the figures here")
    parser.add_argument("--keep-temp", action="store_true", help="keep the temp dir (logs, SQLite file)")
    args = parser.parse_args(argv)
    options = Options(**vars(args))
    if options.runs < 3:
        parser.error("--runs must be at least 3")
    return options


def machine() -> str:
    python = platform.python_version()
    return f"{os.cpu_count()} CPUs, {platform.machine()}, {platform.system()}, Python {python}"


def code_version() -> str:
    """The commit measured, and whether tracked files outside bench/ differ from it (read-only git)."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    return f"{commit}{' with uncommitted changes' if changed else ''}"


async def amain(options: Options, workdir: Path, children: Children) -> int:
    if options.database == "postgresql":
        await recreate_pg_database(options.pg_port)
        database = Database(
            "postgresql",
            f"postgresql+asyncpg://postgres@{HOST}:{options.pg_port}/{PG_BENCH_DATABASE}",
            pg_port=options.pg_port,
        )
    else:
        path = workdir / "bench.db"
        database = Database("sqlite", f"sqlite+aiosqlite:///{path}", sqlite_path=path)
    bench = Bench(options, children, database)
    version = code_version()
    # Ctrl-C, SIGTERM and SIGHUP cancel the run: the children are stopped on the way out.
    task, loop = asyncio.current_task(), asyncio.get_running_loop()
    assert task is not None
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(number, task.cancel)
    started = time.monotonic()
    try:
        say(
            f"engine benchmark on {options.database}; {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}"
        )
        say(f"machine: {machine()}; work dir {workdir}")
        say(f"code: commit {version}")
        await bench.run()
        described = await database.describe()
    finally:
        await bench.close()
        bench.children.stop_all()
    text, data = summary(bench.figures, options, f"{described}; {machine()}; commit {version}")
    say(text)
    if code_version() != version:
        say(f"WARNING: the code changed during the run (now {code_version()}); the figures may mix versions")
    say(f"\n(total {time.monotonic() - started:.0f} s)")
    if options.json_path is not None:
        options.json_path.write_text(json.dumps(data, indent=2) + "\n")
    return 0


def run_benchmark(
    prefix: str, options: Any, amain: Callable[[Any, Path, Children], Coroutine[Any, Any, int]]
) -> int:
    """A benchmark's `amain` in a temp dir of its own; whatever happens, every child process is
    stopped, and the temp dir is kept when it failed (or with `--keep-temp`)."""
    workdir = Path(tempfile.mkdtemp(prefix=f"{prefix}-{options.database}-"))
    children = Children(workdir, {})
    try:
        return asyncio.run(amain(options, workdir, children))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("benchmark interrupted; every process it started is being stopped", file=sys.stderr)
        return 130
    except BenchError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        print(f"logs are in {workdir}", file=sys.stderr)
        options.keep_temp = True
        return 1
    finally:
        children.stop_all()
        if not options.keep_temp:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    return run_benchmark("oreg-bench", parse(argv), amain)


if __name__ == "__main__":
    sys.exit(main())
