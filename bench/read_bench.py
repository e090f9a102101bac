"""Candidate read benchmark: one region with many candidates, read through the real server.

    .venv/bin/python bench/read_bench.py --database postgresql   # 1,000,000 candidates
    .venv/bin/python bench/read_bench.py --database sqlite       # 200,000 candidates

1. The region (and its key) is made with the CLI; its candidates are inserted directly into the
   `candidates` table with bulk SQL (asyncpg COPY on PostgreSQL, executemany on SQLite), with the
   column values the app itself writes. ANALYZE on PostgreSQL.
2. `onderwijsregio serve --no-worker` is started (cwd a temp dir); an admin key raises the region's
   rate limits.
3. From 32 concurrent httpx tasks (closed loop), per run: GET /candidates/{id} (random ids),
   GET /candidates?pageSize=50 (first page), the same 90 % deep (a cursor made with the project's
   own CursorCodec and the server's secret), POST /candidates/find by e-mail and by phone.
   req/s, p50, p99; medians of --runs runs.

Every process started here is stopped at the end (its whole process group), also after an error.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from onderwijsregio.clock import to_rfc3339
from onderwijsregio.cursors import CursorCodec
from onderwijsregio.ids import new_id

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python bench/read_bench.py`: only bench/ is on the path
    sys.path.insert(0, str(ROOT))

from bench.engine_bench import (  # noqa: E402
    BenchError,
    Child,
    Children,
    cpu_seconds,
    free_port,
    pg_connect,
    recreate_pg_database,
    say,
)
from bench.loadgen import percentile  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PYTHON = Path(sys.executable)
CLI = PYTHON.with_name("onderwijsregio")
HOST = "127.0.0.1"
PG_BENCH_DATABASE = "oreg_read_bench"
API = "/api/v2"
RAISED_LIMITS: dict[str, Any] = {
    "rateLimit": {
        "requestsPerSecond": 100_000,
        "burst": 100_000,
        "keyRequestsPerSecond": 100_000,
        "keyBurst": 100_000,
    }
}
PAGE_SIZE = 50
DEPTH = 0.9
COLUMNS = (
    "region_id",
    "sandbox",
    "id",
    "properties",
    "email_key",
    "phone_key",
    "phase",
    "archived",
    "archived_at",
    "privacy_consent_at",
    "change_seq",
    "created_at",
    "updated_at",
)
SQLITE_BATCH = 50_000  # rows per transaction


# ---------------------------------------------------------------------------------------------
# the data


@dataclass
class Dataset:
    """The candidates inserted: row i (0-based, in creation order) is candidate number i."""

    region_id: str
    ids: list[str]
    start: datetime  # created_at of row 0; row i is start + i ms

    def created_at(self, row: int) -> datetime:
        return self.start + timedelta(milliseconds=row)

    @staticmethod
    def email(row: int) -> str:
        return f"Kandidaat.{row}@Bench-Example.NL"

    @staticmethod
    def phone_digits(row: int) -> str:
        return f"{row:08d}"

    def record(self, row: int) -> tuple[Any, ...]:
        """The values of COLUMNS, as the app writes them (candidates/apply.py new_candidate)."""
        email = self.email(row)
        digits = self.phone_digits(row)
        properties = {
            "name": f"Kandidaat {row}",
            "email": email,
            "phone": f"06{digits}",
            "privacyConsent": True,
            "phase": "nieuw",
        }
        at = self.created_at(row)
        return (
            self.region_id,
            False,
            self.ids[row],
            json.dumps(properties),
            email.strip().lower(),
            f"+316{digits}",
            "nieuw",
            False,
            None,
            at,
            row + 1,
            at,
            at,
        )


def make_dataset(region_id: str, count: int) -> Dataset:
    if count >= 10**8:
        raise BenchError("--candidates must be below 100,000,000 (8-digit phone numbers)")
    # Many ids fall in one millisecond and their random part does not follow creation order there;
    # sorted, they are valid ids in creation order.
    ids = sorted(new_id("cand") for _ in range(count))
    now = datetime.now(UTC)
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)
    return Dataset(region_id, ids, now - timedelta(milliseconds=count))


async def load_postgresql(dataset: Dataset, port: int) -> None:
    connection = await pg_connect(port, PG_BENCH_DATABASE)
    try:
        await connection.copy_records_to_table(
            "candidates",
            records=(dataset.record(row) for row in range(len(dataset.ids))),
            columns=COLUMNS,
        )
        started = time.perf_counter()
        await connection.execute("ANALYZE candidates")
        say(f"ANALYZE candidates: {time.perf_counter() - started:.1f} s")
    finally:
        await connection.close()


def sqlite_time(value: datetime | None) -> str | None:
    """How SQLAlchemy stores a DateTime in SQLite (UtcDateTime hands it naive UTC)."""
    return None if value is None else value.strftime("%Y-%m-%d %H:%M:%S.%f")


def load_sqlite(dataset: Dataset, path: Path) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000"):
            connection.execute(f"PRAGMA {pragma}")
        sql = f"INSERT INTO candidates ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"  # noqa: S608 (constant names)
        count = len(dataset.ids)
        for first in range(0, count, SQLITE_BATCH):
            rows = []
            for row in range(first, min(count, first + SQLITE_BATCH)):
                values = list(dataset.record(row))
                values[1], values[7] = int(values[1]), int(values[7])
                for index in (8, 9, 11, 12):
                    values[index] = sqlite_time(values[index])
                rows.append(values)
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(sql, rows)
            connection.execute("COMMIT")
    finally:
        connection.close()


# ---------------------------------------------------------------------------------------------
# figures


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies: list[float]
    statuses: Counter[int]
    server_cpu: float

    @property
    def rate(self) -> float:
        return self.statuses.get(200, 0) / self.seconds

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 0.5) * 1000

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 0.99) * 1000

    def describe(self) -> str:
        others = {code: n for code, n in self.statuses.items() if code != 200}
        text = (
            f"{self.statuses.get(200, 0)} x 200 in {self.seconds:.2f} s = {self.rate:.0f}/s, "
            f"p50 {self.p50:.1f} ms, p99 {self.p99:.1f} ms, server CPU "
            f"{self.server_cpu / max(1, self.requests) * 1000:.1f} ms/request"
        )
        return text + (f", NOT 200: {others}" if others else "")


# A request: (method, path, JSON body or None), made from a random source
Request = tuple[str, str, Any]

FIGURES = (
    ("get", "GET /candidates/{id}, random ids"),
    ("first", f"GET /candidates?pageSize={PAGE_SIZE}, first page"),
    ("deep", f"GET /candidates?pageSize={PAGE_SIZE}, {DEPTH:.0%} deep"),
    ("email", "POST /candidates/find {email}"),
    ("phone", "POST /candidates/find {phone}"),
)


@dataclass
class Options:
    database: str
    candidates: int | None
    runs: int
    requests: int
    concurrency: int
    warmup: int
    max_seconds: float
    pg_port: int
    keep_temp: bool


class Bench:
    def __init__(self, options: Options, children: Children, workdir: Path) -> None:
        self.options = options
        self.children = children
        self.workdir = workdir
        self.results: dict[str, list[LoadResult]] = {name: [] for name, _ in FIGURES}
        self.sqlite_path = workdir / "bench.db"
        if options.database == "postgresql":
            self.url = f"postgresql+asyncpg://postgres@{HOST}:{options.pg_port}/{PG_BENCH_DATABASE}"
        else:
            self.url = f"sqlite+aiosqlite:///{self.sqlite_path}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ONDERWIJSREGIO_")}
        env.update(
            ONDERWIJSREGIO_DATABASE_URL=self.url,
            ONDERWIJSREGIO_RATE_LIMIT_STORAGE="memory://",
            PYTHONUNBUFFERED="1",
        )
        children.env = env
        self.described = ""

    def cli(self, *args: str) -> list[str]:
        return self.children.run(f"cli-{args[1]}", [str(CLI), *args]).split()

    def start_server(self) -> tuple[Child, str]:
        port = free_port()
        argv = [str(CLI), "serve", "--host", HOST, "--port", str(port), "--no-worker"]
        child = self.children.start("server", argv)
        base = f"http://{HOST}:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if child.process.poll() is not None:
                raise BenchError(f"server exited during start-up:\n{child.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    return child, base
            time.sleep(0.05)
        raise BenchError(f"server did not become healthy:\n{child.log_tail()}")

    async def load(
        self, client: httpx.AsyncClient, server: Child, count: int, make: Callable[[random.Random], Request]
    ) -> LoadResult:
        """Up to `count` requests from `concurrency` tasks, each sending its next request when answered;
        none is sent after --max-seconds."""
        source = random.Random(len(self.results["get"]) * 7919 + count)
        requests: Iterator[Request] = (make(source) for _ in range(count))
        latencies: list[float] = []
        statuses: Counter[int] = Counter()

        async def task() -> None:
            for method, path, body in requests:
                if time.perf_counter() > deadline:
                    return
                sent = time.perf_counter()
                answer = await client.request(method, path, json=body)
                latencies.append(time.perf_counter() - sent)
                statuses[answer.status_code] += 1

        server_cpu = cpu_seconds(server.process.pid)
        started = time.perf_counter()
        deadline = started + self.options.max_seconds
        await asyncio.gather(*(task() for _ in range(self.options.concurrency)))
        seconds = time.perf_counter() - started
        return LoadResult(
            len(latencies), seconds, latencies, statuses, cpu_seconds(server.process.pid) - server_cpu
        )

    async def check(self, client: httpx.AsyncClient, dataset: Dataset, deep_cursor: str) -> None:
        """Every kind of request answers what the data says, before anything is timed."""
        count = len(dataset.ids)
        row = count // 3
        answer = await client.get(f"{API}/candidates/{dataset.ids[row]}")
        if answer.status_code != 200 or answer.json()["data"]["id"] != dataset.ids[row]:
            raise BenchError(f"GET /candidates/{{id}}: {answer.status_code} {answer.text[:500]}")
        first = await client.get(f"{API}/candidates", params={"pageSize": PAGE_SIZE})
        items = first.json()["data"] if first.status_code == 200 else None
        if items is None or [c["id"] for c in items] != dataset.ids[:PAGE_SIZE]:
            raise BenchError(f"first page: {first.status_code} {first.text[:500]}")
        deep = await client.get(f"{API}/candidates", params={"pageSize": PAGE_SIZE, "cursor": deep_cursor})
        items = deep.json()["data"] if deep.status_code == 200 else None
        start = int(count * DEPTH)
        if items is None or len(items) != PAGE_SIZE:
            raise BenchError(f"deep page: {deep.status_code} {deep.text[:500]}")
        if [c["id"] for c in items] != dataset.ids[start : start + PAGE_SIZE]:
            raise BenchError("deep page: not the rows at that depth")
        if items[0]["createdAt"] != to_rfc3339(dataset.created_at(start)):
            raise BenchError(f"deep page: createdAt {items[0]['createdAt']!r} is not what was stored")
        say(f"deep page checked: 200, {len(items)} items, rows {start}..{start + PAGE_SIZE - 1} of {count}")
        for body in ({"email": dataset.email(row).upper()}, {"phone": f"06-{dataset.phone_digits(row)}"}):
            found = await client.post(f"{API}/candidates/find", json=body)
            items = found.json()["data"] if found.status_code == 200 else None
            if items is None or [c["id"] for c in items] != [dataset.ids[row]]:
                raise BenchError(f"find {body}: {found.status_code} {found.text[:500]}")

    async def run(self) -> None:
        opts = self.options
        count = opts.candidates or (1_000_000 if opts.database == "postgresql" else 200_000)
        lines = self.cli("admin", "create-region", "--name", "bench")
        region_id, region_key = lines[-2], lines[-1]
        if not region_id.startswith("reg_"):
            raise BenchError(f"create-region printed {lines!r}")
        admin_key = self.cli("admin", "create-key", "--name", "bench")[-1]
        say(f"region {region_id} and its key created with the CLI; an admin key too")

        started = time.perf_counter()
        dataset = make_dataset(region_id, count)
        say(f"{count:,} ids made and sorted in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        if opts.database == "postgresql":
            await load_postgresql(dataset, opts.pg_port)
        else:
            await asyncio.to_thread(load_sqlite, dataset, self.sqlite_path)
        seconds = time.perf_counter() - started
        how = (
            "COPY" if opts.database == "postgresql" else f"executemany, {SQLITE_BATCH:,} rows per transaction"
        )
        say(f"{count:,} candidates inserted ({how}) in {seconds:.1f} s = {count / seconds:,.0f} rows/s")

        server, base = self.start_server()
        say(f"server pid {server.process.pid} on {base} (onderwijsregio serve --no-worker)")
        secret = (self.workdir / "var" / "secret-key").read_text().strip().encode()
        listing = f"candidates:{region_id}:False:createdAt"
        before = int(count * DEPTH) - 1  # the page starts right after this row
        position = [to_rfc3339(dataset.created_at(before)), dataset.ids[before]]
        deep_cursor = CursorCodec(secret).encode(listing, position)

        limits = httpx.Limits(max_connections=opts.concurrency, max_keepalive_connections=opts.concurrency)
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as admin:
            answer = await admin.patch(
                f"{API}/regions/{region_id}", json=RAISED_LIMITS, headers={"x-api-key": admin_key}
            )
            if answer.status_code != 200:
                raise BenchError(f"PATCH /regions/{region_id}: {answer.status_code} {answer.text}")
            raised = ", ".join(f"{k}={v}" for k, v in answer.json()["data"]["rateLimit"].items())
            say(f"region rate limits raised with the admin key: {raised}")

        makers: dict[str, Callable[[random.Random], Request]] = {
            "get": lambda r: ("GET", f"{API}/candidates/{dataset.ids[r.randrange(count)]}", None),
            "first": lambda r: ("GET", f"{API}/candidates?pageSize={PAGE_SIZE}", None),
            "deep": lambda r: ("GET", f"{API}/candidates?pageSize={PAGE_SIZE}&cursor={deep_cursor}", None),
            "email": lambda r: (
                "POST",
                f"{API}/candidates/find",
                {"email": dataset.email(r.randrange(count))},
            ),
            "phone": lambda r: (
                "POST",
                f"{API}/candidates/find",
                {"phone": f"06-{dataset.phone_digits(r.randrange(count))}"},
            ),
        }
        headers = {"x-api-key": region_key}
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits, headers=headers) as client:
            await self.check(client, dataset, deep_cursor)
            for name, _ in FIGURES:
                warm = await self.load(client, server, opts.warmup, makers[name])
                if warm.statuses.get(200, 0) != warm.requests:
                    raise BenchError(f"warm-up of {name}: {warm.describe()}")
            say(f"warm-up: {opts.warmup} requests of each kind")
            for run in range(1, opts.runs + 1):
                say(f"-- run {run}/{opts.runs}")
                for name, title in FIGURES:
                    result = await self.load(client, server, opts.requests, makers[name])
                    self.results[name].append(result)
                    say(f"  {title:<42}: {result.describe()}")
                ratio = self.results["deep"][-1].p50 / self.results["first"][-1].p50
                say(f"  deep / first page p50: {ratio:.2f}x")
        self.children.stop(server)
        self.described = await self.describe_database(count)

    async def describe_database(self, count: int) -> str:
        if self.options.database == "sqlite":
            return f"SQLite {sqlite3.sqlite_version}, {count:,} candidates (file in a temp dir)"
        connection = await pg_connect(self.options.pg_port, PG_BENCH_DATABASE)
        try:
            version = await connection.fetchval("SHOW server_version")
        finally:
            await connection.close()
        return f"PostgreSQL {version} at {HOST}:{self.options.pg_port}, {count:,} candidates"

    def summary(self) -> str:
        opts = self.options

        def med(values: list[float]) -> float:
            return statistics.median(values) if values else math.nan

        lines = [
            "",
            f"== results: medians of {opts.runs} runs ({self.described}; {machine()})",
            f"   per run and kind: {opts.requests} requests (none sent after {opts.max_seconds:.0f} s) "
            f"from {opts.concurrency} concurrent tasks",
        ]
        width = max(len(title) for _, title in FIGURES)
        for name, title in FIGURES:
            results = self.results[name]
            parts = []
            for label, unit, values in (
                ("", "/s", [r.rate for r in results]),
                ("p50", "ms", [r.p50 for r in results]),
                ("p99", "ms", [r.p99 for r in results]),
            ):
                runs = " ".join(f"{v:.0f}" if unit == "/s" else f"{v:.1f}" for v in values)
                shown = f"{med(values):.0f}" if unit == "/s" else f"{med(values):.1f}"
                parts.append(f"{label} {shown} {unit} ({runs})".strip())
            lines.append(f"{title:<{width}}  " + ", ".join(parts))
        ratios = [d.p50 / f.p50 for d, f in zip(self.results["deep"], self.results["first"], strict=True)]
        shown = " ".join(f"{r:.2f}" for r in ratios)
        verdict = "within" if med(ratios) <= 1.2 else "NOT within"
        lines.append(f"deep / first page p50: {med(ratios):.2f}x ({shown}); {verdict} the 1.2x aim")
        return "\n".join(lines)


def machine() -> str:
    return f"{os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}"


def parse(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", choices=("sqlite", "postgresql"), required=True)
    parser.add_argument(
        "--candidates",
        type=int,
        help="candidates in the region (default 1,000,000 PostgreSQL, 200,000 SQLite)",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per figure; medians are reported (>= 3)")
    parser.add_argument("--requests", type=int, default=600, help="requests per kind per run")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent HTTP tasks")
    parser.add_argument("--warmup", type=int, default=100, help="requests of each kind before the runs")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=15.0,
        help="no request of a kind is sent later in a run than this",
    )
    parser.add_argument("--pg-port", type=int, default=5432, help="PostgreSQL on 127.0.0.1 (user postgres)")
    parser.add_argument("--keep-temp", action="store_true", help="keep the temp dir (logs, SQLite file)")
    options = Options(**vars(parser.parse_args(argv)))
    if options.runs < 3:
        parser.error("--runs must be at least 3")
    if options.candidates is not None and options.candidates < 1000:
        parser.error("--candidates must be at least 1000")
    return options


async def amain(options: Options, workdir: Path, children: Children) -> int:
    if options.database == "postgresql":
        await recreate_pg_database(options.pg_port, PG_BENCH_DATABASE)
    bench = Bench(options, children, workdir)
    task, loop = asyncio.current_task(), asyncio.get_running_loop()
    assert task is not None
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(number, task.cancel)
    started = time.monotonic()
    say(f"read benchmark on {options.database}; {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    say(f"machine: {machine()}; work dir {workdir}")
    try:
        await bench.run()
    finally:
        children.stop_all()
    say(bench.summary())
    say(f"\n(total {time.monotonic() - started:.0f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    workdir = Path(tempfile.mkdtemp(prefix=f"oreg-read-bench-{options.database}-"))
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


if __name__ == "__main__":
    sys.exit(main())
