"""Every performance aim of the issue, measured in one run and printed beside its aim (PASS/MISS).

    .venv/bin/python bench/aims_bench.py --database postgresql
    .venv/bin/python bench/aims_bench.py --database sqlite

Real processes on 127.0.0.1 only: `onderwijsregio serve` (with and without its in-process worker) and
`onderwijsregio worker`, driven by bench/loadgen.py (raw asyncio HTTP/1.1, about 0.1 ms of client CPU
per request) with real candidate bodies. Figures are medians of --runs runs, each run's value shown;
the soak runs once. See bench/README.md ("Performance aims benchmark").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import secrets
import signal
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite
import orjson

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python bench/aims_bench.py`: only bench/ is on the path
    sys.path.insert(0, str(ROOT))

from bench.attachments_bench import process_tree, status_mib  # noqa: E402
from bench.engine_bench import (  # noqa: E402
    API,
    APPLIED,
    COUNT_FINAL,
    HOST,
    PYTHON,
    RAISED_LIMITS,
    STATUS,
    WORKER_READY_LOG,
    BenchError,
    Child,
    Children,
    Probe,
    code_version,
    cpu_seconds,
    free_port,
    machine,
    med,
    pg_connect,
    recreate_pg_database,
    run_benchmark,
    say,
)
from bench.loadgen import Client, LoadResult, RequestFactory, install_uvloop, percentile, run_load  # noqa: E402

CLI = str(PYTHON.with_name("onderwijsregio"))
DEFAULT_PG_DATABASE = "oreg_aims"
CANDIDATES = f"{API}/candidates"
MB = 1_000_000  # the aims speak of MB
JSON_HEADERS = {"content-type": "application/json"}
SAMPLE_SECONDS = 0.05
# the issue's sizes, for the flags' help and for projecting a scaled-down import
AIM_IMPORT_SIZE = 100_000
AIM_SOAK = 1_000_000
# "flat" for the soak: the fitted RSS trend grows by at most this much per 100,000 mutations
FLAT_MB_PER_100K = 5.0


# ---------------------------------------------------------------------------------------------
# memory


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its descendants (`serve --processes N` runs N children)."""
    return sum(cpu_seconds(p) for p in process_tree(pid))


def tree_rss_mb(pid: int) -> float:
    """VmRSS summed over the process and its descendants, in MB."""
    return sum(status_mib(p, "VmRSS") for p in process_tree(pid)) * 1024 * 1024 / MB


class RssWatch:
    """Samples a process tree's RSS every SAMPLE_SECONDS while active, keeping the peak."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self.task: asyncio.Task[None] | None = None

    def sample(self) -> float:
        rss = tree_rss_mb(self.pid)
        self.peak = max(self.peak, rss)
        return rss

    async def _loop(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(SAMPLE_SECONDS)

    def __enter__(self) -> RssWatch:
        self.task = asyncio.get_running_loop().create_task(self._loop())
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.task is not None:
            self.task.cancel()
        self.sample()


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs."""
    if len(xs) < 2:
        return math.nan
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else math.nan


# ---------------------------------------------------------------------------------------------
# options and figures


@dataclass
class Options:
    database: str
    runs: int
    concurrency: int
    accepts: int
    apply_mutations: int
    raw_inserts: int
    reads: int
    latency_samples: int
    import_size: int
    soak: int
    warmup: int
    pg_port: int
    pg_database: str
    api_processes: int
    rate_limit_storage: str
    floor: bool
    json_path: Path | None
    keep_temp: bool


@dataclass
class Run:
    """One run's raw figures."""

    values: dict[str, float] = field(default_factory=dict)


@dataclass
class SoakResult:
    mutations: int
    seconds: float
    points: list[tuple[int, float]]  # (mutations accepted so far, tree RSS MB)
    peak: float
    end: float

    @property
    def start(self) -> float:
        return self.points[0][1] if self.points else math.nan

    @property
    def slope_per_100k(self) -> float:
        # the first half is warm-up (caches, pools, allocator arenas filling up over the first minutes)
        tail = self.points[len(self.points) // 2 :]
        return slope([float(m) for m, _ in tail], [r for _, r in tail]) * 100_000


def candidate(tag: str, number: int) -> dict[str, Any]:
    return {"name": "Jan Jansen", "email": f"{tag}-{number}@example.org", "privacyConsent": True}


def candidates_factory(tag: str, items: int) -> RequestFactory:
    """POST /candidates with `items` candidates, each with an e-mail of its own."""

    def make(number: int) -> tuple[str, str, None, bytes]:
        people = [candidate(tag, number * items + i) for i in range(items)]
        return "POST", CANDIDATES, None, orjson.dumps(people)

    return make


def read_factory(ids: list[str]) -> RequestFactory:
    """GET /candidates/{id} of random candidates."""

    def make(_number: int) -> tuple[str, str, None, bytes]:
        return "GET", f"{CANDIDATES}/{random.choice(ids)}", None, b""

    return make


async def answering(child: Child, port: int, path: str, within: float = 60) -> None:
    """Waits until the child answers `GET path` with 200."""
    deadline = time.perf_counter() + within
    client = Client(HOST, port)
    try:
        while time.perf_counter() < deadline:
            if child.process.poll() is not None:
                raise BenchError(f"{child.name} exited during start-up:\n{child.log_tail()}")
            try:
                status, _ = await client.request("GET", path, answer_seconds=5)
                if status == 200:
                    return
            except (OSError, asyncio.IncompleteReadError, TimeoutError):
                await asyncio.sleep(0.02)
    finally:
        await client.close()
    raise BenchError(f"{child.name} did not answer {path}:\n{child.log_tail()}")


def hello_factory(_number: int) -> tuple[str, str, None, bytes]:
    return "GET", "/hello", None, b""


def floor_read_factory(prefix: str, ids: list[str]) -> RequestFactory:
    def make(_number: int) -> tuple[str, str, None, bytes]:
        return "GET", f"{prefix}/candidates/{random.choice(ids)}", None, b""

    return make


def floor_accept_factory(tag: str) -> RequestFactory:
    def make(number: int) -> tuple[str, str, None, bytes]:
        return "POST", "/records", None, orjson.dumps(candidate(tag, number))

    return make


# ---------------------------------------------------------------------------------------------
# the benchmark


class Aims:
    def __init__(self, options: Options, children: Children, workdir: Path) -> None:
        self.options = options
        self.children = children
        self.kind = options.database
        self.sqlite_path = workdir / "aims.db"
        if self.kind == "sqlite":
            self.url = f"sqlite+aiosqlite:///{self.sqlite_path}"
        else:
            self.url = f"postgresql+asyncpg://postgres@{HOST}:{options.pg_port}/{options.pg_database}"
        children.env = self._environment()
        self.runs: list[Run] = []
        self.soak_result: SoakResult | None = None
        self.probe: Probe | None = None
        self.region_id = self.region_key = self.admin_key = ""
        self.drained_seq = 0
        self.candidate_ids: list[str] = []
        self.notes: list[str] = []
        self.salt = secrets.token_hex(3)  # e-mails unique across runs of the benchmark too

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ONDERWIJSREGIO_")}
        env.update(
            ONDERWIJSREGIO_DATABASE_URL=self.url,
            ONDERWIJSREGIO_SECRET_KEY=secrets.token_urlsafe(32),
            ONDERWIJSREGIO_RATE_LIMIT_STORAGE=self.options.rate_limit_storage,
            ONDERWIJSREGIO_ENV="production",
            ONDERWIJSREGIO_WORKERS="1",
            PYTHONUNBUFFERED="1",
        )
        return env

    # -- set-up ------------------------------------------------------------------------------------

    async def set_up(self) -> None:
        if self.kind == "postgresql":
            await recreate_pg_database(self.options.pg_port, self.options.pg_database)
        self.children.run("cli-migrate", [CLI, "migrate"])
        lines = self.children.run("cli-create-region", [CLI, "admin", "create-region", "--name", "bench"])
        words = lines.split()
        self.region_id, self.region_key = words[-2], words[-1]
        if not self.region_id.startswith("reg_"):
            raise BenchError(f"create-region printed {lines!r}")
        self.admin_key = self.children.run(
            "cli-create-key", [CLI, "admin", "create-key", "--name", "ops"]
        ).split()[-1]
        say(f"migrated; region {self.region_id} and its key, and an admin key, created with the CLI")
        if self.kind == "sqlite":
            connection = await aiosqlite.connect(self.sqlite_path, isolation_level=None)
            await connection.execute("PRAGMA busy_timeout=30000")
            self.probe = Probe("sqlite", sqlite=connection)
            table = "id INTEGER PRIMARY KEY AUTOINCREMENT, payload TEXT NOT NULL, created_at TEXT NOT NULL"
        else:
            self.probe = Probe("postgresql", pg=await self.connect_pg())
            table = "id BIGSERIAL PRIMARY KEY, payload TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL"
        await self.require_probe().execute(f"CREATE TABLE IF NOT EXISTS bench_raw_inserts ({table})")

    async def connect_pg(self) -> Any:
        return await pg_connect(self.options.pg_port, self.options.pg_database)

    def require_probe(self) -> Probe:
        if self.probe is None:
            raise BenchError("no database connection yet")
        return self.probe

    async def describe_database(self) -> str:
        probe = self.require_probe()
        if self.kind == "sqlite":
            return f"SQLite {await probe.value('SELECT sqlite_version()')} (file in a temp dir)"
        version = await probe.value("SHOW server_version")
        return f"PostgreSQL {version} at {HOST}:{self.options.pg_port}, database {self.options.pg_database}"

    async def start_server(self, worker: bool) -> tuple[Child, int, float]:
        """`onderwijsregio serve` on a free port; (child, port, seconds from spawn to healthy)."""
        port = free_port()
        argv = [CLI, "serve", "--host", HOST, "--port", str(port), *([] if worker else ["--no-worker"])]
        if self.options.api_processes > 1:  # only then: older code knows no such option
            argv += ["--processes", str(self.options.api_processes)]
        spawned = time.perf_counter()
        child = self.children.start("serve" if worker else "serve-no-worker", argv)
        await answering(child, port, "/health")
        return child, port, time.perf_counter() - spawned

    async def start_floor(self) -> tuple[Child, int]:
        """bench/floor_app.py on a free port: FastAPI alone, asyncpg on PostgreSQL."""
        port = free_port()
        code = f"import bench.floor_app as f; f.serve({port}, processes={self.options.api_processes})"
        env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        if self.kind == "postgresql":
            env |= {"BENCH_FLOOR_DSN": self.url.replace("+asyncpg", ""), "BENCH_FLOOR_REGION": self.region_id}
        child = self.children.start("floor", [str(PYTHON), "-c", code], env)
        await answering(child, port, "/hello")
        return child, port

    async def raise_limits(self, port: int) -> None:
        client = Client(HOST, port, {"x-api-key": self.admin_key, **JSON_HEADERS})
        try:
            status, body = await client.request(
                "PATCH", f"{API}/regions/{self.region_id}", orjson.dumps(RAISED_LIMITS)
            )
        finally:
            await client.close()
        if status != 200:
            raise BenchError(f"PATCH /regions/{self.region_id}: {status} {body[:300]!r}")
        data = orjson.loads(body)["data"]
        limits = ", ".join(f"{k}={v}" for k, v in data["rateLimit"].items())
        say(
            f"region limits raised with the admin key: {limits}, "
            f"maxQueuedMutations={data['maxQueuedMutations']}"
        )

    # -- load --------------------------------------------------------------------------------------

    async def load(
        self,
        port: int,
        factory: RequestFactory,
        requests: int,
        on_answer: Callable[[int, int, bytes], None] | None = None,
    ) -> LoadResult:
        return await run_load(
            HOST,
            port,
            factory,
            requests,
            self.options.concurrency,
            headers={"x-api-key": self.region_key, **JSON_HEADERS},
            on_answer=on_answer,
        )

    def collect_ids(self, _number: int, status: int, body: bytes) -> None:
        if status == 202:
            self.candidate_ids.extend(orjson.loads(body)["data"]["resourceIds"])

    async def timed_load(
        self,
        server: Child,
        port: int,
        factory: RequestFactory,
        requests: int,
        on_answer: Callable[[int, int, bytes], None] | None = None,
    ) -> tuple[LoadResult, float]:
        """A closed-loop load; (load result, CPU ms the server's process tree spent per request)."""
        cpu = tree_cpu_seconds(server.process.pid)
        result = await self.load(port, factory, requests, on_answer)
        return result, (tree_cpu_seconds(server.process.pid) - cpu) / max(1, result.requests) * 1000

    async def accept(
        self, server: Child, port: int, tag: str, items: int, requests: int
    ) -> tuple[LoadResult, float]:
        """POST /candidates closed loop; (load result, server CPU ms per request)."""
        factory = candidates_factory(f"{self.salt}-{tag}", items)
        result, cpu_ms = await self.timed_load(server, port, factory, requests, self.collect_ids)
        if result.statuses.get(202, 0) != requests:
            raise BenchError(f"{tag}: not every POST answered 202: {result.describe()}")
        return result, cpu_ms

    # -- SQL ---------------------------------------------------------------------------------------

    async def max_seq(self) -> int:
        value = await self.require_probe().value(
            "SELECT max(seq) FROM mutations WHERE region_id = ?", self.region_id
        )
        return int(value or 0)

    async def final_after(self, after: int) -> int:
        return int(await self.require_probe().value(COUNT_FINAL, self.region_id, after) or 0)

    async def applied(self, after: int, through: int) -> tuple[int, int, int, float]:
        """(mutations, item rows, failed rows, table span seconds) of a seq range."""
        row = await self.require_probe().row(APPLIED[self.kind], self.region_id, after, through)
        return int(row[0]), int(row[1] or 0), int(row[2] or 0), float(row[3] or 0)

    async def wait_final(self, after: int, count: int, within: float, server: Child | None = None) -> float:
        """Polls until `count` mutations after seq `after` are final; the perf_counter when seen."""
        deadline = time.perf_counter() + within
        while True:
            if await self.final_after(after) >= count:
                return time.perf_counter()
            if server is not None and server.process.poll() is not None:
                raise BenchError(f"{server.name} exited:\n{server.log_tail()}")
            if time.perf_counter() > deadline:
                raise BenchError(f"{count} mutations not final after {within:.0f} s")
            await asyncio.sleep(0.02)

    # -- raw inserts (engine_bench's yardstick) ---------------------------------------------------

    async def raw_insert_rate(self, run: int) -> float:
        n = self.options.raw_inserts
        if self.kind == "sqlite":
            connection = await aiosqlite.connect(self.sqlite_path, isolation_level=None)
            try:
                for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000"):
                    await connection.execute(f"PRAGMA {pragma}")
                started = time.perf_counter()
                for number in range(n):
                    await connection.execute("BEGIN IMMEDIATE")
                    await connection.execute(
                        "INSERT INTO bench_raw_inserts (payload, created_at) VALUES (?, ?)",
                        (f"raw-{run}-{number}", time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())),
                    )
                    await connection.execute("COMMIT")
                return n / (time.perf_counter() - started)
            finally:
                await connection.close()
        connections = [await self.connect_pg() for _ in range(self.options.concurrency)]
        numbers = iter(range(n))

        async def task(connection: Any) -> None:
            for number in numbers:
                await connection.execute(
                    "INSERT INTO bench_raw_inserts (payload, created_at) VALUES ($1, now())",
                    f"raw-{run}-{number}",
                )

        try:
            started = time.perf_counter()
            await asyncio.gather(*(task(c) for c in connections))
            return n / (time.perf_counter() - started)
        finally:
            for connection in connections:
                await connection.close()

    # -- apply by a worker process ----------------------------------------------------------------

    async def start_worker(self, label: str, within: float = 60) -> tuple[Child, float]:
        """`onderwijsregio worker`; (child, perf_counter when it logged that it is ready, else spawn)."""
        worker = self.children.start(f"worker-{label}", [CLI, "worker"])
        spawned = time.perf_counter()
        while time.perf_counter() < spawned + within:
            if WORKER_READY_LOG in worker.log_path.read_text(errors="replace"):
                return worker, time.perf_counter()
            if worker.process.poll() is not None:
                raise BenchError(f"worker exited early:\n{worker.log_tail()}")
            await asyncio.sleep(0.01)
        self.notes.append(f"{label}: the worker's start-up line was not seen; timed from spawn")
        return worker, spawned

    async def drain(self, label: str) -> tuple[float, float, int]:
        """`onderwijsregio worker` on the queued backlog: (rows/s from ready, table span s, failed rows)."""
        after, through = self.drained_seq, await self.max_seq()
        backlog = through - after
        if await self.final_after(after):
            raise BenchError("mutations were applied while no worker ran")
        worker, ready = await self.start_worker(label)
        try:
            done = await self.wait_final(after, backlog, max(120.0, backlog / 10), worker)
        finally:
            self.children.stop(worker)
        self.drained_seq = through
        _mutations, rows, failed, span = await self.applied(after, through)
        return rows / (done - ready), span, failed

    # -- the phases --------------------------------------------------------------------------------

    async def phase_api(self) -> None:
        """API only (serve --no-worker): accept, raw inserts, apply by a worker process, reads; RSS."""
        opts = self.options
        server, port, _ = await self.start_server(worker=False)
        say(f"\n== API process without worker (pid {server.process.pid}, port {port})")
        await self.raise_limits(port)
        if opts.warmup:
            await self.accept(server, port, "warm", 1, opts.warmup)
            await self.drain("warmup")
            say(f"warm-up: {opts.warmup} accepts, applied")
        for number in range(1, opts.runs + 1):
            run = self.runs[number - 1]
            with RssWatch(server.process.pid) as rss:
                accept, cpu_ms = await self.accept(server, port, f"a{number}", 1, opts.accepts)
            raw = await self.raw_insert_rate(number)
            run.values |= {
                "accept_rate": accept.rate_of(202),
                "accept_p50": accept.p(0.5),
                "accept_p99": accept.p(0.99),
                "accept_server_cpu_ms": cpu_ms,
                "accept_client_cpu_ms": accept.client_cpu_ms,
                "raw_insert_rate": raw,
                "accept_vs_raw": accept.rate_of(202) / raw * 100,
            }
            say(f"-- run {number}/{opts.runs}")
            say(
                f"  accept 1 candidate, c={opts.concurrency}: {accept.describe()}; "
                f"server CPU {cpu_ms:.1f} ms/req"
            )
            say(f"  raw INSERT+COMMIT: {raw:.0f}/s -> accept is {accept.rate_of(202) / raw:.1%} of it")
            rate1, span1, failed1 = await self.drain(f"r{number}-1")
            run.values["apply1_rate"] = rate1
            say(f"  apply 1-item backlog ({opts.accepts}): {rate1:.0f} rows/s (table span {span1:.2f} s)")
            read = read_factory(list(self.candidate_ids))

            with rss:
                reads, cpu_ms = await self.timed_load(server, port, read, opts.reads)
            if reads.statuses.get(200, 0) != reads.requests:
                raise BenchError(f"reads not all 200: {reads.describe()}")
            run.values |= {
                "read_rate": reads.rate,
                "read_p50": reads.p(0.5),
                "read_p99": reads.p(0.99),
                "read_server_cpu_ms": cpu_ms,
                "read_client_cpu_ms": reads.client_cpu_ms,
                "api_rss_peak": rss.peak,
            }
            say(
                f"  GET /candidates/{{id}}, c={opts.concurrency}: {reads.describe()}; "
                f"server CPU {cpu_ms:.1f} ms/req"
            )
            say(f"  API process tree RSS, peak during accept and reads: {rss.peak:.1f} MB")
            if opts.floor:
                await self.floor_loads(run, number)
            accept10, _ = await self.accept(server, port, f"t{number}", 10, opts.apply_mutations)
            rate10, span10, failed10 = await self.drain(f"r{number}-10")
            run.values |= {"apply10_rate": rate10, "apply10_span_rate": opts.apply_mutations * 10 / span10}
            say(f"  accept 10 candidates per POST: {accept10.describe()}")
            say(
                f"  apply 10-item backlog ({opts.apply_mutations} x 10): {rate10:.0f} rows/s "
                "from worker ready "
                f"({opts.apply_mutations * 10 / span10:.0f} rows/s by the table's timestamps)"
            )
            if failed1 or failed10:
                raise BenchError(f"{failed1 + failed10} candidate items failed")
            # The PostgreSQL deployment's shape: API and worker in processes of their own.
            worker, _ready = await self.start_worker(f"import{number}")
            try:
                await self.bulk_import(server, port, run, number, key="import_split", worker=worker)
            finally:
                self.children.stop(worker)
        self.children.stop(server)

    async def floor_loads(self, run: Run, number: int) -> None:
        """The same loads on bench/floor_app.py: what FastAPI alone does on this machine, this run.
        A fresh process each run: PostgreSQL keeps a connection's generic plan, and one made while
        the table was small (this server's autovacuum may be off, so nothing re-plans) can be a scan."""
        opts, values = self.options, run.values
        floor, port = await self.start_floor()
        loads: list[tuple[str, RequestFactory, int, int]] = [("hello", hello_factory, opts.reads, 200)]
        if self.kind == "postgresql":
            loads += [
                ("read", floor_read_factory("", list(self.candidate_ids)), opts.reads, 200),
                ("keyed_read", floor_read_factory("/keyed", list(self.candidate_ids)), opts.reads, 200),
                ("accept", floor_accept_factory(f"{self.salt}-f{number}"), opts.accepts, 202),
            ]
        for name, factory, requests, expected in loads:
            await self.load(port, factory, min(requests, opts.warmup))  # every pooled connection used once
            result, cpu_ms = await self.timed_load(floor, port, factory, requests)
            if result.statuses.get(expected, 0) != requests:
                raise BenchError(f"floor {name}: not every answer was {expected}: {result.describe()}")
            values |= {
                f"floor_{name}_rate": result.rate,
                f"floor_{name}_p99": result.p(0.99),
                f"floor_{name}_cpu_ms": cpu_ms,
            }
            say(f"  floor (FastAPI alone) {name}: {result.describe()}; server CPU {cpu_ms:.2f} ms/req")
        self.children.stop(floor)
        if self.kind == "postgresql":
            values["floor_accept_vs_raw"] = values["floor_accept_rate"] / values["raw_insert_rate"] * 100

    async def phase_server(self) -> None:
        """A fresh `serve` (API + in-process worker) per run: first /schema, idle end-to-end, bulk import."""
        opts = self.options
        for number in range(1, opts.runs + 1):
            run = self.runs[number - 1]
            server, port, healthy = await self.start_server(worker=True)
            say(
                f"\n== run {number}/{opts.runs}: fresh server with worker "
                f"(pid {server.process.pid}, port {port})"
            )
            client = Client(HOST, port, {"x-api-key": self.region_key, **JSON_HEADERS})
            try:
                sent = time.perf_counter()
                status, _ = await client.request("GET", f"{API}/schema")
                first_schema = (time.perf_counter() - sent) * 1000
                if status != 200:
                    raise BenchError(f"GET /schema answered {status}")
                sent = time.perf_counter()
                await client.request("GET", f"{API}/schema")
                second_schema = (time.perf_counter() - sent) * 1000
                say(
                    f"  healthy {healthy:.2f} s after spawn; first GET /schema {first_schema:.1f} ms "
                    f"(second {second_schema:.1f} ms)"
                )
                from_send, from_202 = await self.end_to_end(client, f"e{number}")
            finally:
                await client.close()
            run.values |= {
                "schema_first_ms": first_schema,
                "schema_second_ms": second_schema,
                "e2e_p50": percentile(from_send, 0.5) * 1000,
                "e2e_p99": percentile(from_send, 0.99) * 1000,
                "e2e_202_p50": percentile(from_202, 0.5) * 1000,
            }
            say(
                f"  idle end-to-end ({opts.latency_samples}): POST sent -> succeeded p50 "
                f"{run.values['e2e_p50']:.1f} ms, p99 {run.values['e2e_p99']:.1f} ms; "
                f"202 -> succeeded p50 {run.values['e2e_202_p50']:.1f} ms"
            )
            await self.bulk_import(server, port, run, number)
            self.children.stop(server)

    async def end_to_end(self, client: Client, tag: str) -> tuple[list[float], list[float]]:
        probe = self.require_probe()
        from_send: list[float] = []
        from_202: list[float] = []
        for number in range(self.options.latency_samples + 3):  # the first 3 warm up
            await asyncio.sleep(0.02)  # let the worker go idle
            sent = time.perf_counter()
            status, body = await client.request(
                "POST", CANDIDATES, orjson.dumps([candidate(f"{self.salt}-{tag}", number)])
            )
            accepted = time.perf_counter()
            if status != 202:
                raise BenchError(f"end-to-end POST answered {status}: {body[:300]!r}")
            mutation_id = orjson.loads(body)["data"]["mutationId"]
            while True:
                state = await probe.value(STATUS, self.region_id, False, mutation_id)
                if state in ("succeeded", "failed"):
                    seen = time.perf_counter()
                    break
                if time.perf_counter() > accepted + 30:
                    raise BenchError(f"mutation {mutation_id} still {state} after 30 s")
                await asyncio.sleep(0.0005)
            if state != "succeeded":
                raise BenchError(f"mutation {mutation_id} {state}")
            if number >= 3:
                from_send.append(seen - sent)
                from_202.append(seen - accepted)
        return from_send, from_202

    async def bulk_import(
        self,
        server: Child,
        port: int,
        run: Run,
        number: int,
        key: str = "import",
        worker: Child | None = None,
    ) -> None:
        """POSTs of 10 candidates until all are applied: by `serve`'s own worker, or by `worker`."""
        size = self.options.import_size
        requests = max(1, size // 10)
        after = await self.max_seq()
        started = time.perf_counter()
        with RssWatch(server.process.pid) as rss:
            result, _ = await self.accept(server, port, f"{key}{number}", 10, requests)
            accepted = time.perf_counter()
            done = await self.wait_final(after, requests, max(120.0, requests / 5), worker or server)
        _mutations, rows, failed, _span = await self.applied(after, after + requests)
        if failed:
            raise BenchError(f"bulk import: {failed} items failed")
        seconds = done - started
        run.values |= {
            f"{key}_seconds": seconds,
            f"{key}_projected": seconds * AIM_IMPORT_SIZE / (requests * 10),
            f"{key}_accept_seconds": accepted - started,
            f"{key}_rows_per_s": rows / seconds,
            f"{key}_rss_peak": rss.peak,
        }
        by = "a worker process" if worker else "serve's own worker"
        say(
            f"  bulk import {requests * 10:,} candidates ({requests:,} POSTs of 10, "
            f"c={self.options.concurrency}, applied by {by}): accepted in {accepted - started:.1f} s "
            f"({result.rate:.0f} POST/s, p99 {result.p(0.99):.0f} ms), all applied after {seconds:.1f} s "
            f"= {rows / seconds:.0f} rows/s; API process RSS peak {rss.peak:.1f} MB"
        )
        self.drained_seq = await self.max_seq()

    async def soak(self) -> None:
        total = self.options.soak
        if total <= 0:
            return
        server, port, _ = await self.start_server(worker=True)
        say(
            f"\n== soak: {total:,} 1-candidate mutations against one server with worker "
            f"(pid {server.process.pid})"
        )
        chunk = max(100, min(5000, total // 40))
        after = await self.max_seq()
        points: list[tuple[int, float]] = []
        sent = 0
        started = time.perf_counter()
        next_report = started + 15
        with RssWatch(server.process.pid) as rss:
            while sent < total:
                n = min(chunk, total - sent)
                await self.accept(server, port, f"s{sent}", 1, n)
                sent += n
                points.append((sent, rss.sample()))
                if time.perf_counter() > next_report:
                    next_report += 15
                    say(
                        f"  {sent:,} accepted, {time.perf_counter() - started:.0f} s, "
                        f"tree RSS {points[-1][1]:.1f} MB"
                    )
            await self.wait_final(after, total, max(300.0, total / 5), server)
            end = rss.sample()
        seconds = time.perf_counter() - started
        self.soak_result = SoakResult(total, seconds, points, rss.peak, end)
        result = self.soak_result
        say(
            f"  {total:,} mutations accepted and applied in {seconds:.1f} s ({total / seconds:.0f}/s); "
            f"RSS start {result.start:.1f} MB, peak {result.peak:.1f} MB, end {result.end:.1f} MB; trend "
            f"{result.slope_per_100k:+.2f} MB per 100k mutations"
        )
        self.children.stop(server)

    async def run(self) -> None:
        self.runs = [Run() for _ in range(self.options.runs)]
        await self.set_up()
        await self.phase_api()
        await self.phase_server()
        await self.soak()

    async def close(self) -> None:
        if self.probe is not None:
            await self.probe.close()
            self.probe = None


# ---------------------------------------------------------------------------------------------
# the summary


@dataclass
class Row:
    name: str
    key: str
    unit: str
    fmt: str
    aim: str = ""  # "<= 15", ">= 5000", ...
    detail: bool = False


def verdict(value: float, aim: str) -> str:
    if not aim or math.isnan(value):
        return ""
    op, target = aim.split()
    ok = value <= float(target) if op == "<=" else value >= float(target)
    return "PASS" if ok else "MISS"


def floor_get_rows(title: str, name: str) -> list[Row]:
    """A GET of the floor app: its p99 beside the read aim, its rate and its CPU per request."""
    return [
        Row(f"floor: {title} p99", f"floor_{name}_p99", "ms", ".1f", "<= 20"),
        Row("  rate", f"floor_{name}_rate", "200/s", ".0f", detail=True),
        Row("  server CPU per request", f"floor_{name}_cpu_ms", "ms", ".2f", detail=True),
    ]


def summary(aims: Aims, described: str, seconds: float) -> tuple[str, dict[str, Any]]:
    opts = aims.options
    c = opts.concurrency
    scaled = opts.import_size != AIM_IMPORT_SIZE
    rows = [
        Row("idle end-to-end p50 (POST sent -> succeeded)", "e2e_p50", "ms", ".1f", "<= 15"),
        Row("  p99", "e2e_p99", "ms", ".1f", detail=True),
        Row("  202 -> succeeded p50", "e2e_202_p50", "ms", ".1f", detail=True),
        Row("apply 10-item mutations, 1 worker process", "apply10_rate", "rows/s", ".0f", ">= 5000"),
        Row("  by the table's timestamps", "apply10_span_rate", "rows/s", ".0f", detail=True),
        Row("  1-item mutations", "apply1_rate", "rows/s", ".0f", detail=True),
        Row(f"bulk import {opts.import_size:,} (POSTs of 10), serve", "import_seconds", "s", ".1f"),
        Row(
            f"  projected to {AIM_IMPORT_SIZE:,} (x{AIM_IMPORT_SIZE / opts.import_size:g})"
            if scaled
            else f"  {AIM_IMPORT_SIZE:,} accepted and applied",
            "import_projected",
            "s",
            ".1f",
            "<= 60",
        ),
        Row("  accept part", "import_accept_seconds", "s", ".1f", detail=True),
        Row("  applied rows/s overall", "import_rows_per_s", "rows/s", ".0f", detail=True),
        Row("bulk import, serve --no-worker + worker process", "import_split_seconds", "s", ".1f"),
        Row(
            f"  projected to {AIM_IMPORT_SIZE:,}" if scaled else f"  {AIM_IMPORT_SIZE:,}, all applied",
            "import_split_projected",
            "s",
            ".1f",
            "<= 60",
        ),
        Row("  accept part", "import_split_accept_seconds", "s", ".1f", detail=True),
        Row(f"accept 1 candidate, c={c}, API only", "accept_rate", "202/s", ".0f", detail=True),
        Row("raw single-row INSERT+COMMIT", "raw_insert_rate", "rows/s", ".0f", detail=True),
        Row("accept rate / raw INSERT rate", "accept_vs_raw", "%", ".1f", ">= 50"),
        Row("  accept p50", "accept_p50", "ms", ".1f", detail=True),
        Row("  accept p99", "accept_p99", "ms", ".1f", detail=True),
        Row("  server CPU per accept", "accept_server_cpu_ms", "ms", ".2f", detail=True),
        Row("  load generator CPU per request", "accept_client_cpu_ms", "ms", ".3f", detail=True),
        Row(f"GET /candidates/{{id}} p99, c={c}", "read_p99", "ms", ".1f", "<= 20"),
        Row("  p50", "read_p50", "ms", ".1f", detail=True),
        Row("  rate", "read_rate", "200/s", ".0f", detail=True),
        Row("  server CPU per read", "read_server_cpu_ms", "ms", ".2f", detail=True),
        *floor_get_rows("FastAPI hello world GET", "hello"),
        *floor_get_rows("naive read (asyncpg, 1 query)", "read"),
        *floor_get_rows("keyed read (key look-up, scoped read)", "keyed_read"),
        Row("floor: naive accept / raw INSERT rate", "floor_accept_vs_raw", "%", ".1f", ">= 50"),
        Row("  rate (Pydantic, INSERT+COMMIT)", "floor_accept_rate", "202/s", ".0f", detail=True),
        Row("  server CPU per accept", "floor_accept_cpu_ms", "ms", ".2f", detail=True),
        Row("first GET /schema after start", "schema_first_ms", "ms", ".1f", "<= 50"),
        Row("  second call", "schema_second_ms", "ms", ".1f", detail=True),
        Row("API process tree RSS, peak (accept + reads)", "api_rss_peak", "MB", ".1f", "<= 150"),
        Row("  serve (API + worker) during bulk import", "import_rss_peak", "MB", ".1f", detail=True),
    ]
    lines = [
        "",
        f"== summary: medians of {opts.runs} runs ({described})",
        f"   sizes per run: {opts.accepts} 1-candidate accepts, {opts.apply_mutations} 10-item mutations "
        f"({opts.apply_mutations * 10} rows) applied, {opts.raw_inserts} raw inserts, {opts.reads} reads, "
        f"{opts.latency_samples} end-to-end samples, bulk import {opts.import_size:,} candidates "
        f"(aim size {AIM_IMPORT_SIZE:,}); soak {opts.soak:,} mutations once (aim size {AIM_SOAK:,}); "
        f"rate limits in {opts.rate_limit_storage}",
    ]
    width = max(len(r.name) for r in rows) + 2
    header = f"{'figure':<{width}} {'median':>10} {'unit':<7} {'aim':<9} {'':<5} runs"
    lines += [header, "-" * len(header)]
    data: dict[str, Any] = {}
    for row in rows:
        values = [run.values.get(row.key, math.nan) for run in aims.runs]
        value = med([v for v in values if not math.isnan(v)])
        mark = verdict(value, row.aim)
        each = " ".join(format(v, row.fmt) for v in values)
        lines.append(f"{row.name:<{width}} {value:>10{row.fmt}} {row.unit:<7} {row.aim:<9} {mark:<5} {each}")
        data[row.key] = {"name": row.name.strip(), "median": value, "unit": row.unit, "runs": values}
        if row.aim:
            data[row.key] |= {"aim": row.aim, "verdict": mark}
    soak = aims.soak_result
    if soak is not None:
        trend = soak.slope_per_100k
        mark = "PASS" if trend <= FLAT_MB_PER_100K else "MISS"
        lines += [
            f"{f'soak {soak.mutations:,} mutations, RSS start/peak/end':<{width}} "
            f"{soak.start:>.1f} / {soak.peak:.1f} / {soak.end:.1f} MB  "
            f"({soak.mutations / soak.seconds:.0f} mutations/s)",
            f"{'  RSS trend per 100k mutations':<{width}} {trend:>+10.2f} {'MB':<7} "
            f"{f'<= {FLAT_MB_PER_100K:g}':<9} {mark:<5} (flat; one soak)",
        ]
        data["soak"] = {
            "mutations": soak.mutations,
            "seconds": soak.seconds,
            "rss_start": soak.start,
            "rss_peak": soak.peak,
            "rss_end": soak.end,
            "slope_mb_per_100k": trend,
            "aim": f"<= {FLAT_MB_PER_100K:g}",
            "verdict": mark,
            "points": soak.points,
        }
    lines += [f"- {note}" for note in aims.notes]
    lines.append(f"(total {seconds:.0f} s)")
    document = {
        "database": opts.database,
        "described": described,
        "seconds": seconds,
        "options": {k: str(v) for k, v in vars(opts).items()},
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
    parser.add_argument("--runs", type=int, default=3, help="runs per figure; medians are reported")
    parser.add_argument("--concurrency", type=int, default=32, help="connections of the load generator")
    parser.add_argument("--accepts", type=int, default=1000, help="1-candidate POSTs per run (accept rate)")
    parser.add_argument(
        "--apply-mutations", type=int, default=500, help="10-candidate mutations per run for the apply rate"
    )
    parser.add_argument("--raw-inserts", type=int, default=2000, help="raw INSERT+COMMITs per run")
    parser.add_argument("--reads", type=int, default=2000, help="GET /candidates/{id} per run")
    parser.add_argument("--latency-samples", type=int, default=50, help="idle end-to-end samples per run")
    parser.add_argument(
        "--import-size",
        type=int,
        default=10_000,
        help=f"candidates per bulk import run (the aim: {AIM_IMPORT_SIZE:,}; smaller sizes are projected)",
    )
    parser.add_argument(
        "--soak",
        type=int,
        default=10_000,
        help=f"soak mutations, once (the issue's soak: {AIM_SOAK:,}; 0: none)",
    )
    parser.add_argument("--warmup", type=int, default=200, help="1-candidate accepts (then applied) first")
    parser.add_argument("--pg-port", type=int, default=5432, help="PostgreSQL on 127.0.0.1 (user postgres)")
    parser.add_argument(
        "--pg-database",
        default=DEFAULT_PG_DATABASE,
        help=f"the database the benchmark drops, recreates and leaves in place (its name starts with "
        f"{DEFAULT_PG_DATABASE})",
    )
    parser.add_argument(
        "--api-processes", type=int, default=1, help="serve --processes N (RSS and CPU: the whole tree)"
    )
    parser.add_argument(
        "--rate-limit-storage",
        default="memory://",
        help="the servers' rate-limit storage; redis://127.0.0.1:6379/0 as in production",
    )
    parser.add_argument(
        "--no-floor",
        dest="floor",
        action="store_false",
        help="skip the same loads on bench/floor_app.py (FastAPI alone, no project code)",
    )
    parser.add_argument("--json", dest="json_path", type=Path, help="also write the figures here")
    parser.add_argument("--keep-temp", action="store_true", help="keep the temp dir (logs, SQLite file)")
    options = Options(**vars(parser.parse_args(argv)))
    if options.runs < 1 or options.import_size < 10:
        parser.error("--runs must be at least 1 and --import-size at least 10")
    if not options.pg_database.startswith(DEFAULT_PG_DATABASE):  # it is dropped: never `test`
        parser.error(f"--pg-database must start with {DEFAULT_PG_DATABASE}")
    return options


async def amain(options: Options, workdir: Path, children: Children) -> int:
    aims = Aims(options, children, workdir)
    version = code_version()
    task, loop = asyncio.current_task(), asyncio.get_running_loop()
    assert task is not None
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(number, task.cancel)
    started = time.monotonic()
    try:
        say(
            f"performance aims on {options.database}; {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}"
        )
        say(f"machine: {machine()}; work dir {workdir}; code: commit {version}")
        await aims.run()
        described = await aims.describe_database()
    finally:
        await aims.close()
        children.stop_all()
    text, data = summary(aims, f"{described}; {machine()}; commit {version}", time.monotonic() - started)
    say(text)
    if code_version() != version:
        say(f"WARNING: the code changed during the run (now {code_version()}); the figures may mix versions")
    if options.json_path is not None:
        options.json_path.write_text(json.dumps(data, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    install_uvloop()
    return run_benchmark("oreg-aims", parse(argv), amain)


if __name__ == "__main__":
    sys.exit(main())
