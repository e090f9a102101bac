"""Real `onderwijsregio` processes for black-box tests: the CLI, a served port, its log."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from tests.conftest import BACKEND, POSTGRES_URL
from tests.log_scan import SCAN

COMMAND = [str(Path(sys.executable).with_name("onderwijsregio"))]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def fresh_database(workdir: Path) -> Iterator[str]:
    """An empty database of the backend under test: a new SQLite file, or a new PostgreSQL database."""
    if BACKEND != "postgresql":
        yield f"sqlite+aiosqlite:///{workdir / 'fresh.db'}"
        return
    name = f"oreg_test_{secrets.token_hex(6)}"
    url = make_url(POSTGRES_URL)

    async def run(statement: str) -> None:
        connection = await asyncpg.connect(
            host=url.host, port=url.port or 5432, user=url.username or "postgres", database="postgres"
        )
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    _in_own_loop(run(f'CREATE DATABASE "{name}"'))
    try:
        yield str(url.set(database=name).render_as_string(hide_password=False))
    finally:
        _in_own_loop(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _in_own_loop(job: Coroutine[Any, Any, None]) -> None:
    """Runs a coroutine to its end on a loop of its own (callers may be inside a running loop)."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, job).result()


def environment(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONDERWIJSREGIO_")}
    env.update(ONDERWIJSREGIO_DATABASE_URL=database_url, PYTHONUNBUFFERED="1", **extra)
    return env


def run_cli(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        COMMAND + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    # Its log is standard error; what `admin` prints on standard output are keys, never to be logged.
    SCAN.lines.extend(result.stderr.splitlines())
    if args[:1] == ["admin"]:
        for line in result.stdout.splitlines():
            if line.startswith("oreg_"):  # not the region id create-region prints first
                SCAN.remember(line)
    return result


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    workdir: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def serve(workdir: Path, env: dict[str, str], *args: str) -> Iterator[Server]:
    port = free_port()
    log_path = workdir / f"server-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*COMMAND, "serve", "--host", "127.0.0.1", "--port", str(port), *args],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(f"http://127.0.0.1:{port}", process, log_path, workdir)
    SCAN.files.append(log_path)  # scanned at the end of the run (tests/log_scan.py)
    try:
        _wait_until_healthy(server)
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        first_key = workdir / "var" / "initial-admin-key"
        if first_key.exists():
            SCAN.remember(first_key.read_text())


def _wait_until_healthy(server: Server) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"server exited during start-up:\n{server.log()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/health", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"server did not become healthy:\n{server.log()}")
