"""The command line and a served process, black-box (contract §4, §1.1, §1.4)."""

from __future__ import annotations

import contextlib
import gc
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from onderwijsregio.api_keys import tokens
from onderwijsregio.app import create_app
from onderwijsregio.config import Settings
from tests.live import COMMAND, environment, fresh_database, run_cli, serve

API = "/api/v2"


def test_admin_commands_print_exactly_what_the_contract_says(tmp_path: Path) -> None:
    with fresh_database(tmp_path) as database:
        env = environment(database)
        key = run_cli(["admin", "create-key", "--name", "ops"], tmp_path, env)
        assert key.returncode == 0, key.stderr
        assert key.stdout.count("\n") == 1
        assert tokens.is_well_formed(key.stdout.strip())
        assert key.stdout.strip() not in key.stderr
        region = run_cli(["admin", "create-region", "--name", "Regio Zuid"], tmp_path, env)
        assert region.returncode == 0, region.stderr
        region_id, region_key = region.stdout.splitlines()
        assert region_id.startswith("reg_") and tokens.is_well_formed(region_key)
        with serve(tmp_path, env) as server:
            mine = httpx.get(f"{server.url}{API}/regions/me", headers={"x-api-key": region_key})
            assert mine.json()["data"] == {**mine.json()["data"], "id": region_id, "name": "Regio Zuid"}
            regions = httpx.get(f"{server.url}{API}/regions", headers={"x-api-key": key.stdout.strip()})
            assert regions.status_code == 200


def test_serve_creates_the_first_admin_key_in_a_private_file(tmp_path: Path) -> None:
    with fresh_database(tmp_path) as database, serve(tmp_path, environment(database)) as server:
        key_file = tmp_path / "var" / "initial-admin-key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        key = key_file.read_text().strip()
        assert httpx.get(f"{server.url}{API}/regions", headers={"x-api-key": key}).status_code == 200
        log = server.log()
        assert str(key_file.resolve()) in log
        assert key not in log and tokens.display_prefix(key) not in log
        secret_file = tmp_path / "var" / "secret-key"
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "var").stat().st_mode) == 0o700


def test_a_second_serve_keeps_the_existing_admin_key(tmp_path: Path) -> None:
    with fresh_database(tmp_path) as database:
        env = environment(database)
        existing = run_cli(["admin", "create-key", "--name", "ops"], tmp_path, env).stdout.strip()
        with serve(tmp_path, env):
            assert not (tmp_path / "var" / "initial-admin-key").exists()
        assert tokens.is_well_formed(existing)


def test_many_processes_may_migrate_and_start_at_once(tmp_path: Path) -> None:
    with fresh_database(tmp_path) as database:
        env = environment(database)
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: run_cli(["migrate"], tmp_path, env), range(4)))
        assert [r.returncode for r in results] == [0, 0, 0, 0], [r.stderr[-800:] for r in results]
        first, second = tmp_path / "a", tmp_path / "b"
        first.mkdir()
        second.mkdir()
        with serve(first, env) as one, serve(second, env) as two:
            keys = [p / "var" / "initial-admin-key" for p in (first, second)]
            written = [k for k in keys if k.exists()]
            assert len(written) == 1, "exactly one process creates the first admin key"
            admin = {"x-api-key": written[0].read_text().strip()}
            listed = httpx.get(f"{one.url}{API}/admin/api-keys", headers=admin).json()["data"]
            assert len(listed) == 1
            assert httpx.get(f"{two.url}{API}/regions", headers=admin).status_code == 200


def test_cursor_secret_is_generated_once_and_shared(tmp_path: Path) -> None:
    """Two processes in one working directory sign cursors with the one generated secret."""
    with fresh_database(tmp_path) as database:
        env = environment(database)
        admin = {"x-api-key": run_cli(["admin", "create-key", "--name", "ops"], tmp_path, env).stdout.strip()}
        for name in ("Een", "Twee", "Drie"):
            run_cli(["admin", "create-region", "--name", name], tmp_path, env)
        with serve(tmp_path, env) as one, serve(tmp_path, env) as two:
            page = httpx.get(f"{one.url}{API}/regions", params={"pageSize": 1}, headers=admin).json()
            following = httpx.get(
                f"{two.url}{API}/regions",
                params={"pageSize": 1, "cursor": page["meta"]["cursor"]},
                headers=admin,
            )
            assert following.status_code == 200, following.text
            assert following.json()["data"][0]["id"] != page["data"][0]["id"]


def raw_exchange(url: str, head: bytes, body_chunks: list[bytes]) -> bytes:
    """Send a request over a socket; stop sending as soon as an answer arrives; return the answer."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(head)
        sock.settimeout(0.05)
        answer = b""
        for chunk in body_chunks:
            with contextlib.suppress(TimeoutError, BlockingIOError):
                answer += sock.recv(65536)
            if answer:
                break
            try:
                sock.sendall(chunk)
            except OSError:
                break
        sock.settimeout(10)
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            piece = sock.recv(65536)
            if not piece:
                break
            answer += piece
        return answer


def test_oversize_bodies_are_refused_without_reading_them(tmp_path: Path) -> None:
    with fresh_database(tmp_path) as database, serve(tmp_path, environment(database)) as server:
        key = (tmp_path / "var" / "initial-admin-key").read_text().strip()
        megabyte = b"x" * (1024 * 1024)
        declared = (
            f"POST {API}/regions HTTP/1.1\r\nHost: t\r\nx-api-key: {key}\r\n"
            f"content-type: application/json\r\ncontent-length: {100 * len(megabyte)}\r\n\r\n"
        ).encode()
        answer = raw_exchange(server.url, declared, [megabyte] * 100)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b'"code":"payload_too_large"' in answer
        chunked_head = (
            f"POST {API}/regions HTTP/1.1\r\nHost: t\r\nx-api-key: {key}\r\n"
            "content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
        ).encode()
        chunk = f"{len(megabyte):x}\r\n".encode() + megabyte + b"\r\n"
        answer = raw_exchange(server.url, chunked_head, [chunk] * 100)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b'"code":"payload_too_large"' in answer
        # a body under the limit is read and judged on its content
        small = httpx.post(f"{server.url}{API}/regions", json={"name": "Klein"}, headers={"x-api-key": key})
        assert small.status_code == 201


def test_access_log_holds_no_query_strings_keys_or_bodies(tmp_path: Path) -> None:
    with fresh_database(tmp_path) as database, serve(tmp_path, environment(database)) as server:
        key = (tmp_path / "var" / "initial-admin-key").read_text().strip()
        httpx.get(
            f"{server.url}{API}/regions",
            params={"email": "jan.jansen@example.org"},
            headers={"x-api-key": key},
        )
        httpx.post(
            f"{server.url}{API}/regions", json={"name": "Geheime Regio Naam"}, headers={"api-key": key}
        )
        httpx.get(f"{server.url}{API}/regions", params={"api-key": key})
        log = server.log()
        assert '"path":"/api/v2/regions"' in log
        for secret in (
            "jan.jansen@example.org",
            "jan.jansen",
            key,
            tokens.display_prefix(key),
            "Geheime Regio",
        ):
            assert secret not in log, secret


def test_serve_without_worker_leaves_work_to_a_worker_process(tmp_path: Path) -> None:
    """`serve --no-worker` only accepts; a separate `onderwijsregio worker` applies, and stops on SIGTERM."""
    with fresh_database(tmp_path) as database:
        env = environment(database, ONDERWIJSREGIO_ENGINE_POLL_SECONDS="0.2")
        region_id, key = run_cli(
            ["admin", "create-region", "--name", "Werk"], tmp_path, env
        ).stdout.splitlines()
        with serve(tmp_path, env, "--no-worker") as server:
            accepted = httpx.post(f"{server.url}{API}/sandbox/reset", headers={"x-api-key": key})
            assert accepted.status_code == 202
            status_url = f"{server.url}{accepted.headers['location']}"
            time.sleep(1.5)
            assert httpx.get(status_url, headers={"x-api-key": key}).json()["data"]["status"] == "queued"
            worker = subprocess.Popen(
                [*COMMAND, "worker"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            try:
                deadline = time.monotonic() + 30
                while (
                    httpx.get(status_url, headers={"x-api-key": key}).json()["data"]["status"] != "succeeded"
                ):
                    assert time.monotonic() < deadline, "the worker process did not apply the mutation"
                    time.sleep(0.1)
            finally:
                worker.send_signal(signal.SIGTERM)
                _, errors = worker.communicate(timeout=30)
            assert worker.returncode == 0, errors.decode()[-2000:]
        assert region_id.startswith("reg_")


def test_serve_runs_several_processes_on_one_port(tmp_path: Path) -> None:
    """`serve --processes 2`: two API processes (each with its worker) answer on the port, writes are
    applied, pages are walked with a new connection each (cursors are the same in every process),
    and SIGTERM stops them all."""
    with fresh_database(tmp_path) as database:
        env = environment(database)
        key = run_cli(["admin", "create-region", "--name", "Twee"], tmp_path, env).stdout.split()[1]
        headers = {"x-api-key": key}
        with serve(tmp_path, env, "--processes", "2") as server:
            # Healthy means one process answers; on a busy machine the second may start seconds later.
            _wait_for_log(server.log, "Started server process", times=2)
            with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
                created = [
                    http.post(f"{API}/candidates", json=_person(n)).json()["data"]["mutationId"]
                    for n in range(6)
                ]
                assert all(_applied(http, mutation_id) for mutation_id in created)
                pages = _walk_candidates(http)
            log = server.log()
            children = _children(server.process.pid)
        assert sorted(pages) == sorted(f"twee-{n}@example.org" for n in range(6))
        assert log.count("Started server process") == 2
    # multiprocessing's resource tracker ignores SIGTERM and leaves once its pipe closes, which can
    # be a moment after the supervisor has exited; so the check allows a few seconds.
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in children):
        assert time.monotonic() < deadline, f"a process outlived the stop: {_commands(children)}"
        time.sleep(0.1)


def _wait_for_log(log: Callable[[], str], text: str, *, times: int, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while log().count(text) < times:
        assert time.monotonic() < deadline, f"{text!r} not logged {times} times:\n{log()[-2000:]}"
        time.sleep(0.1)


def _person(n: int) -> dict[str, object]:
    return {"name": f"Twee {n}", "email": f"twee-{n}@example.org", "privacyConsent": True}


def _applied(http: httpx.Client, mutation_id: str) -> bool:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if http.get(f"{API}/mutations/{mutation_id}").json()["data"]["status"] == "succeeded":
            return True
        time.sleep(0.1)
    return False


def _walk_candidates(http: httpx.Client) -> list[str]:
    """Two at a time, each page on a new connection, which either process may take."""
    emails, cursor = [], None
    while True:
        params = {"pageSize": 2, **({"cursor": cursor} if cursor else {})}
        page = httpx.get(f"{http.base_url}{API}/candidates", params=params, headers=http.headers).json()
        emails += [candidate["email"] for candidate in page["data"]]
        cursor = page["meta"]["cursor"]
        if cursor is None:
            return emails


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(line) for line in found.stdout.split()]


def _commands(pids: list[int]) -> list[str]:
    return [_command(pid) for pid in pids if _alive(pid)]


def _command(pid: int) -> str:
    with contextlib.suppress(FileNotFoundError):
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ").strip()
    return str(pid)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


async def test_serve_keeps_its_start_up_objects_out_of_the_collectors_way(settings: Settings) -> None:
    """`serve`'s app (long_running) freezes what start-up made, so a full collection no longer walks
    it (a pause of 50-110 ms under load); an app made in a test process, one of many, does not."""
    before = gc.get_freeze_count()
    try:
        for long_running in (False, True):
            app = create_app(settings, run_workers=False, long_running=long_running)
            async with app.router.lifespan_context(app):
                assert (gc.get_freeze_count() > before) is long_running
    finally:
        gc.unfreeze()
