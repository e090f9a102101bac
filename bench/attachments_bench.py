"""Attachment memory benchmark: does the server's memory stay flat while a 10 MiB file goes in and out?

    .venv/bin/python bench/attachments_bench.py                          # SQLite, 3 runs x 100 rounds
    .venv/bin/python bench/attachments_bench.py --database postgresql

Per run a fresh `onderwijsregio serve` (API + one in-process worker, local file store, cwd a temp dir)
and --iterations rounds of:

1. POST /candidates/{id}/attachments with a 10 MiB PDF as base64, until its mutation has succeeded;
2. GET /attachments/{id}/content, read as a stream, its sha256 checked;
3. DELETE /attachments/{id}, until its mutation has succeeded (the store does not grow).

The server's RSS (VmRSS from /proc, with any child process) is read after every round and every 50 ms
in between. The figure the issue asks for is the growth from the end of the warm-up (round 5) to the
end of the last round. Medians of --runs runs. Every process started here is stopped at the end.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import secrets
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python bench/attachments_bench.py`: only bench/ is on the path
    sys.path.insert(0, str(ROOT))

from bench.engine_bench import (  # noqa: E402
    API,
    HOST,
    PG_ADMIN_DATABASE,
    PYTHON,
    BenchError,
    Child,
    Children,
    code_version,
    cpu_seconds,
    free_port,
    machine,
    med,
    pg_connect,
    run_benchmark,
    runs_text,
    say,
)
from bench.loadgen import percentile  # noqa: E402
from bench.read_bench import RAISED_LIMITS  # noqa: E402

CLI = PYTHON.with_name("onderwijsregio")
PG_BENCH_DATABASE = "oreg_bench_files"
MIB = 1024 * 1024
FILE_BYTES = 10 * MIB  # the largest file the API takes
PDF_HEADER = b"%PDF-1.4\n"  # the type is judged by the bytes: this makes the file a PDF
SAMPLE_SECONDS = 0.05
POLL_SECONDS = 0.01
APPLY_TIMEOUT_SECONDS = 120.0
# Flat means: over all the rounds after the warm-up, less than half of one file stayed behind.
FLAT_LIMIT_MIB = FILE_BYTES / MIB / 2


# ---------------------------------------------------------------------------------------------
# memory of the server, from /proc


def process_tree(pid: int) -> list[int]:
    """The process and its descendants (the server should have none, but a spawned helper counts)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                found.extend(process_tree(int(child)))
    return found


def status_mib(pid: int, name: str) -> float:
    """A `kB` line of /proc/<pid>/status (VmRSS, VmHWM) in MiB; 0 for a process that has gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{name}:"):
                return int(line.split()[1]) / 1024
    return 0.0


class RssSampler:
    """Reads the server's RSS on demand and every SAMPLE_SECONDS in between, keeping the peak."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self.samples = 0
        self.most_processes = 0

    def sample(self) -> float:
        pids = process_tree(self.pid)
        rss = sum(status_mib(pid, "VmRSS") for pid in pids)
        self.peak = max(self.peak, rss)
        self.samples += 1
        self.most_processes = max(self.most_processes, len(pids))
        return rss

    async def run_in_background(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(SAMPLE_SECONDS)

    def kernel_peak(self) -> float:
        """VmHWM: the kernel's own high-water mark of the server process, which no sampling misses."""
        return status_mib(self.pid, "VmHWM")


# ---------------------------------------------------------------------------------------------
# figures


@dataclass
class Round:
    upload: float  # seconds from POST sent to its mutation read as succeeded
    download: float  # seconds from GET sent to the last byte read
    delete: float  # seconds from DELETE sent to its mutation read as succeeded
    rss: float  # MiB after the round


@dataclass
class RunResult:
    warmup: int
    idle_rss: float  # MiB after start-up, before the first round
    rounds: list[Round] = field(default_factory=list)
    sampled_peak: float = 0.0
    kernel_peak: float = 0.0
    samples: int = 0
    processes: int = 0
    server_cpu: float = 0.0
    log_problems: list[str] = field(default_factory=list)
    files_left: int = 0

    @property
    def baseline(self) -> float:
        return self.rounds[self.warmup - 1].rss

    @property
    def final(self) -> float:
        return self.rounds[-1].rss

    @property
    def growth(self) -> float:
        return self.final - self.baseline

    @property
    def trend_kib_per_round(self) -> float:
        """Least-squares slope after the warm-up: a steady leak shows here even when the ends are noisy."""
        after = self.rounds[self.warmup - 1 :]
        slope = statistics.linear_regression(range(len(after)), [r.rss for r in after]).slope
        return slope * 1024

    @property
    def upload_p50_ms(self) -> float:
        return percentile([r.upload for r in self.rounds], 0.5) * 1000

    @property
    def download_p50_ms(self) -> float:
        return percentile([r.download for r in self.rounds], 0.5) * 1000

    @property
    def delete_p50_ms(self) -> float:
        return percentile([r.delete for r in self.rounds], 0.5) * 1000

    @property
    def download_mib_per_second(self) -> float:
        return FILE_BYTES / MIB / self.download_p50_ms * 1000

    @property
    def cpu_ms_per_round(self) -> float:
        return self.server_cpu / len(self.rounds) * 1000


# ---------------------------------------------------------------------------------------------
# the API


def pdf_file() -> bytes:
    """Exactly FILE_BYTES: a PDF header, then random bytes (nothing compresses or deduplicates it)."""
    return PDF_HEADER + secrets.token_bytes(FILE_BYTES - len(PDF_HEADER))


def upload_body(content: bytes) -> bytes:
    """The JSON body, encoded once per run so that the client does not rebuild 14 MiB every round."""
    cv = {
        "base64": base64.b64encode(content).decode(),
        "filename": "cv.pdf",
        "contentType": "application/pdf",
    }
    return json.dumps({"curriculumVitae": [cv]}).encode()


def accepted(answer: httpx.Response, what: str) -> tuple[str, str]:
    """The mutation id and the first resource id of a 202."""
    if answer.status_code != 202:
        raise BenchError(f"{what}: {answer.status_code} {answer.text[:500]}")
    data = answer.json()["data"]
    return data["mutationId"], data["resourceIds"][0]


async def wait_applied(client: httpx.AsyncClient, mutation_id: str, what: str) -> None:
    deadline = time.monotonic() + APPLY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        answer = await client.get(f"{API}/mutations/{mutation_id}")
        if answer.status_code != 200:
            raise BenchError(
                f"{what}: GET /mutations/{mutation_id}: {answer.status_code} {answer.text[:500]}"
            )
        status = answer.json()["data"]["status"]
        if status == "succeeded":
            return
        if status == "failed":
            raise BenchError(f"{what}: mutation {mutation_id} failed: {answer.text[:1000]}")
        await asyncio.sleep(POLL_SECONDS)
    raise BenchError(f"{what}: mutation {mutation_id} not applied in {APPLY_TIMEOUT_SECONDS:.0f} s")


async def create_candidate(client: httpx.AsyncClient) -> str:
    body = {"name": "Bench", "email": "bench@example.org", "privacyConsent": True}
    mutation_id, candidate_id = accepted(
        await client.post(f"{API}/candidates", json=body), "create candidate"
    )
    await wait_applied(client, mutation_id, "create candidate")
    return candidate_id


async def upload(client: httpx.AsyncClient, candidate_id: str, body: bytes) -> str:
    answer = await client.post(
        f"{API}/candidates/{candidate_id}/attachments",
        content=body,
        headers={"content-type": "application/json"},
    )
    mutation_id, attachment_id = accepted(answer, "upload")
    await wait_applied(client, mutation_id, "upload")
    return attachment_id


async def download_sha256(client: httpx.AsyncClient, attachment_id: str) -> tuple[str, int]:
    """The hash and size of the content, read chunk by chunk as the server streams it."""
    digest, size = hashlib.sha256(), 0
    async with client.stream("GET", f"{API}/attachments/{attachment_id}/content") as answer:
        if answer.status_code != 200:
            await answer.aread()
            raise BenchError(f"download: {answer.status_code} {answer.text[:500]}")
        async for chunk in answer.aiter_bytes():
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


async def delete(client: httpx.AsyncClient, attachment_id: str) -> None:
    mutation_id, _ = accepted(await client.delete(f"{API}/attachments/{attachment_id}"), "delete")
    await wait_applied(client, mutation_id, "delete")


# ---------------------------------------------------------------------------------------------
# the benchmark


@dataclass
class Options:
    database: str
    iterations: int
    runs: int
    warmup_rounds: int
    pg_port: int
    json_path: Path | None
    keep_temp: bool


@dataclass
class Tenant:
    region_id: str
    region_key: str
    admin_key: str


class Bench:
    def __init__(self, options: Options, children: Children, workdir: Path) -> None:
        self.options = options
        self.children = children
        self.workdir = workdir
        self.storage = workdir / "var" / "attachments"  # the default file store, relative to the cwd
        if options.database == "postgresql":
            self.url = f"postgresql+asyncpg://postgres@{HOST}:{options.pg_port}/{PG_BENCH_DATABASE}"
        else:
            self.url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ONDERWIJSREGIO_")}
        env.update(
            ONDERWIJSREGIO_DATABASE_URL=self.url,
            ONDERWIJSREGIO_RATE_LIMIT_STORAGE="memory://",
            ONDERWIJSREGIO_WORKERS="1",
            PYTHONUNBUFFERED="1",
        )
        children.env = env
        self.results: list[RunResult] = []

    def cli(self, *args: str) -> list[str]:
        return self.children.run(f"cli-{args[1]}", [str(CLI), *args]).split()

    def set_up(self) -> Tenant:
        # The CLI logs (migrations) to the same file; the id and key are the last two words.
        words = self.cli("admin", "create-region", "--name", "bench")
        region_id, region_key = words[-2], words[-1]
        if not region_id.startswith("reg_"):
            raise BenchError(f"create-region printed {words!r}")
        admin_key = self.cli("admin", "create-key", "--name", "bench")[-1]
        say(f"region {region_id} and its key created with the CLI; an admin key too")
        return Tenant(region_id, region_key, admin_key)

    def start_server(self) -> tuple[Child, str]:
        port = free_port()
        child = self.children.start("server", [str(CLI), "serve", "--host", HOST, "--port", str(port)])
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

    async def raise_limits(self, base: str, tenant: Tenant) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            answer = await client.patch(
                f"{API}/regions/{tenant.region_id}",
                json=RAISED_LIMITS,
                headers={"x-api-key": tenant.admin_key},
            )
        if answer.status_code != 200:
            raise BenchError(f"PATCH /regions/{tenant.region_id}: {answer.status_code} {answer.text}")
        limits = ", ".join(f"{k}={v}" for k, v in answer.json()["data"]["rateLimit"].items())
        say(f"region rate limits raised with the admin key: {limits}")

    async def one_round(
        self, client: httpx.AsyncClient, candidate_id: str, body: bytes, expected_sha256: str
    ) -> tuple[float, float, float]:
        started = time.perf_counter()
        attachment_id = await upload(client, candidate_id, body)
        uploaded = time.perf_counter()
        sha256, size = await download_sha256(client, attachment_id)
        downloaded = time.perf_counter()
        if sha256 != expected_sha256 or size != FILE_BYTES:
            raise BenchError(f"download of {attachment_id}: {size} bytes, sha256 {sha256}, not the upload")
        await delete(client, attachment_id)
        deleted = time.perf_counter()
        return uploaded - started, downloaded - uploaded, deleted - downloaded

    async def rounds(self, client: httpx.AsyncClient, server: Child, result: RunResult) -> None:
        """--iterations rounds with the sampler running beside them."""
        content = pdf_file()
        body, expected = upload_body(content), hashlib.sha256(content).hexdigest()
        del content
        candidate_id = await create_candidate(client)
        sampler = RssSampler(server.process.pid)
        result.idle_rss = sampler.sample()
        background = asyncio.create_task(sampler.run_in_background())
        cpu_before = cpu_seconds(server.process.pid)
        try:
            for number in range(1, self.options.iterations + 1):
                timings = await self.one_round(client, candidate_id, body, expected)
                result.rounds.append(Round(*timings, rss=sampler.sample()))
                self.progress(number, result)
        finally:
            background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await background
        result.server_cpu = cpu_seconds(server.process.pid) - cpu_before
        result.sampled_peak, result.kernel_peak = sampler.peak, sampler.kernel_peak()
        result.samples, result.processes = sampler.samples, sampler.most_processes

    def progress(self, number: int, result: RunResult) -> None:
        every = max(1, self.options.iterations // 4)
        if number in (1, self.options.warmup_rounds) or number % every == 0:
            last = result.rounds[-1]
            upload_ms, download_ms, delete_ms = (
                seconds * 1000 for seconds in (last.upload, last.download, last.delete)
            )
            say(
                f"  round {number:>3}: RSS {last.rss:6.1f} MiB; upload->applied {upload_ms:5.0f} ms, "
                f"download {download_ms:4.0f} ms, delete->applied {delete_ms:4.0f} ms"
            )

    async def one_run(self, tenant: Tenant, number: int) -> RunResult:
        server, base = self.start_server()
        say(f"-- run {number}/{self.options.runs}: server pid {server.process.pid} on {base}")
        if number == 1:
            await self.raise_limits(base, tenant)
        result = RunResult(warmup=self.options.warmup_rounds, idle_rss=0.0)
        headers = {"x-api-key": tenant.region_key}
        async with httpx.AsyncClient(base_url=base, timeout=120, headers=headers) as client:
            await self.rounds(client, server, result)
        self.children.stop(server)
        result.log_problems = log_problems(server.log_path)
        result.files_left = sum(1 for path in self.storage.rglob("*") if path.is_file())
        say(describe_run(result))
        return result

    async def run(self) -> None:
        tenant = self.set_up()
        for number in range(1, self.options.runs + 1):
            self.results.append(await self.one_run(tenant, number))

    async def describe_database(self) -> str:
        if self.options.database == "sqlite":
            return "SQLite (file in a temp dir)"
        connection = await pg_connect(self.options.pg_port, PG_BENCH_DATABASE)
        try:
            version = await connection.fetchval("SHOW server_version")
        finally:
            await connection.close()
        return f"PostgreSQL {version} at {HOST}:{self.options.pg_port}, database {PG_BENCH_DATABASE}"


def log_problems(path: Path) -> list[str]:
    """The server's error and warning lines (JSON logs) and tracebacks: the figures are only worth
    something if the server did not complain while producing them."""
    markers = ('"level":"error"', '"level":"warning"', '"level":"critical"', "Traceback")
    text = path.read_text(errors="replace")
    return [line for line in text.splitlines() if any(marker in line for marker in markers)]


def describe_run(result: RunResult) -> str:
    rounds = result.rounds
    lines = [
        f"  RSS idle {result.idle_rss:.1f} MiB, after round {result.warmup} {result.baseline:.1f} MiB, "
        f"after round {len(rounds)} {result.final:.1f} MiB: growth {result.growth:+.1f} MiB "
        f"({result.trend_kib_per_round:+.1f} KiB/round); peak {result.sampled_peak:.1f} MiB sampled, "
        f"{result.kernel_peak:.1f} MiB VmHWM",
        f"  server processes seen: {result.processes}; RSS samples: {result.samples}; files left in the "
        f"store: {result.files_left}; server CPU {result.cpu_ms_per_round:.0f} ms/round",
    ]
    if result.log_problems:
        lines.append(f"  server log: {len(result.log_problems)} warning/error lines, the first:")
        lines.append(f"    {result.log_problems[0][:400]}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# the summary


def figure_rows(results: list[RunResult]) -> list[tuple[str, list[float], str, str]]:
    warmup, last = results[0].warmup, len(results[0].rounds)
    return [
        ("server RSS before round 1 (idle)", [r.idle_rss for r in results], "MiB", ".1f"),
        (f"server RSS after round {warmup} (warm-up)", [r.baseline for r in results], "MiB", ".1f"),
        (f"server RSS after round {last}", [r.final for r in results], "MiB", ".1f"),
        (f"growth, round {warmup} -> {last}", [r.growth for r in results], "MiB", "+.1f"),
        (
            "  trend after the warm-up (least squares)",
            [r.trend_kib_per_round for r in results],
            "KiB/rd",
            "+.1f",
        ),
        ("peak RSS, sampled every 50 ms", [r.sampled_peak for r in results], "MiB", ".1f"),
        ("peak RSS, kernel high-water mark (VmHWM)", [r.kernel_peak for r in results], "MiB", ".1f"),
        ("upload -> applied, p50", [r.upload_p50_ms for r in results], "ms", ".0f"),
        ("download (streamed, sha256 checked), p50", [r.download_p50_ms for r in results], "ms", ".0f"),
        ("  download rate at p50", [r.download_mib_per_second for r in results], "MiB/s", ".0f"),
        ("delete -> applied, p50", [r.delete_p50_ms for r in results], "ms", ".0f"),
        ("server CPU per round", [r.cpu_ms_per_round for r in results], "ms", ".0f"),
    ]


def verdict(results: list[RunResult]) -> str:
    growth = med([r.growth for r in results])
    worst = max(r.growth for r in results)
    flat = growth <= FLAT_LIMIT_MIB
    return (
        f"verdict: memory {'stays FLAT' if flat else 'is NOT flat'}: median growth {growth:+.1f} MiB "
        f"(worst run {worst:+.1f} MiB) over {len(results[0].rounds) - results[0].warmup} rounds of "
        f"{FILE_BYTES // MIB} MiB up and down; the limit is {FLAT_LIMIT_MIB:.0f} MiB (half a file)"
    )


def summary(results: list[RunResult], options: Options, described: str) -> tuple[str, dict[str, Any]]:
    """The table of medians (and every run's value), and the same as data for --json."""
    rows = figure_rows(results)
    width = max(len(name) for name, *_ in rows)
    lines = [
        "",
        f"== results: medians of {options.runs} runs ({described})",
        f"   per run: a fresh server, {options.iterations} rounds of a {FILE_BYTES:,}-byte PDF "
        "uploaded (base64) -> applied, downloaded, deleted -> applied",
    ]
    figures: dict[str, Any] = {}
    for name, values, unit, fmt in rows:
        lines.append(
            f"{name:<{width}}  {format(med(values), fmt):>9} {unit:<6}  runs: {runs_text(values, fmt)}"
        )
        figures[name.strip()] = {"median": med(values), "unit": unit, "runs": values}
    lines.append(verdict(results))
    document = {
        "database": options.database,
        "described": described,
        "options": {k: str(v) for k, v in vars(options).items()},
        "figures": figures,
        "rss_after_each_round_mib": [[round(x.rss, 2) for x in r.rounds] for r in results],
        "verdict": verdict(results),
    }
    return "\n".join(lines), document


# ---------------------------------------------------------------------------------------------
# main


async def recreate_pg_database(port: int) -> None:
    """Only PG_BENCH_DATABASE is dropped or created; `postgres` is merely connected to for that."""
    await on_pg_admin(port, f'DROP DATABASE IF EXISTS "{PG_BENCH_DATABASE}" WITH (FORCE)')
    await on_pg_admin(port, f'CREATE DATABASE "{PG_BENCH_DATABASE}"')


async def on_pg_admin(port: int, sql: str) -> None:
    try:
        admin = await pg_connect(port, PG_ADMIN_DATABASE)
    except (OSError, asyncpg.PostgresError) as error:
        raise BenchError(f"PostgreSQL at {HOST}:{port} (user postgres): {error}") from None
    try:
        await admin.execute(sql)
    finally:
        await admin.close()


def parse(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--iterations", type=int, default=100, help="rounds per run")
    parser.add_argument(
        "--runs", type=int, default=3, help="runs, each with a fresh server; medians are reported"
    )
    parser.add_argument(
        "--warmup-rounds", type=int, default=5, help="growth is measured from the end of this round"
    )
    parser.add_argument("--pg-port", type=int, default=5432, help="PostgreSQL on 127.0.0.1 (user postgres)")
    parser.add_argument("--json", dest="json_path", type=Path, help="also write the figures here")
    parser.add_argument("--keep-temp", action="store_true", help="keep the temp dir and the PG database")
    options = Options(**vars(parser.parse_args(argv)))
    if options.runs < 1:
        parser.error("--runs must be at least 1")
    if not 1 <= options.warmup_rounds < options.iterations:
        parser.error("--warmup-rounds must be at least 1 and below --iterations")
    return options


async def amain(options: Options, workdir: Path, children: Children) -> int:
    if options.database == "postgresql":
        await recreate_pg_database(options.pg_port)
    bench = Bench(options, children, workdir)
    version = code_version()
    # Ctrl-C, SIGTERM and SIGHUP cancel the run: the children are stopped on the way out.
    task, loop = asyncio.current_task(), asyncio.get_running_loop()
    assert task is not None
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(number, task.cancel)
    started = time.monotonic()
    now = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    say(f"attachment memory benchmark on {options.database}; {now}")
    say(f"machine: {machine()}; work dir {workdir}; code: commit {version}")
    try:
        await bench.run()
        described = await bench.describe_database()
    finally:
        children.stop_all()
    text, data = summary(bench.results, options, f"{described}; {machine()}; commit {version}")
    say(text)
    if code_version() != version:
        say(f"WARNING: the code changed during the run (now {code_version()}); the figures may mix versions")
    say(f"\n(total {time.monotonic() - started:.0f} s)")
    if options.json_path is not None:
        options.json_path.write_text(json.dumps(data, indent=2) + "\n")
    if options.database == "postgresql" and not options.keep_temp:
        await on_pg_admin(options.pg_port, f'DROP DATABASE IF EXISTS "{PG_BENCH_DATABASE}" WITH (FORCE)')
    return 0  # the verdict is reported, not enforced


def main(argv: list[str] | None = None) -> int:
    return run_benchmark("oreg-attachments-bench", parse(argv), amain)


if __name__ == "__main__":
    sys.exit(main())
