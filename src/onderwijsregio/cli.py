"""The `onderwijsregio` command (contract §4): serve, worker, migrate, admin create-key/create-region."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onderwijsregio.api_keys import service as api_key_service
from onderwijsregio.api_keys.service import NewKey
from onderwijsregio.auth.schemas import ALL_PERMISSIONS
from onderwijsregio.config import Settings, ensure_private_dir, get_settings
from onderwijsregio.db import make_engine, make_sessionmaker
from onderwijsregio.logs import configure_logging
from onderwijsregio.migrate import apply_migrations, startup_lock
from onderwijsregio.regions import service as region_service
from onderwijsregio.regions.schemas import RegionCreate

if TYPE_CHECKING:
    from fastapi import FastAPI

    from onderwijsregio.context import AppContext

log = logging.getLogger("onderwijsregio")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = get_settings()
    configure_logging(settings.env)
    ensure_private_dir(settings.var_dir)
    result: int = args.run(settings, args)
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onderwijsregio", description="Onderwijsregio API v2 server")
    commands = parser.add_subparsers(required=True, metavar="command")

    serve = commands.add_parser("serve", help="apply migrations, then serve the API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--no-worker", action="store_true", help="serve only; run `onderwijsregio worker` apart"
    )
    serve.add_argument(
        "--processes",
        type=int,
        default=1,
        choices=range(1, 65),
        metavar="N",
        help="API processes on this port (each with its own worker unless --no-worker); default 1",
    )
    serve.set_defaults(run=_serve)

    worker = commands.add_parser("worker", help="a standalone mutation worker")
    worker.add_argument(
        "--metrics-port", type=int, help="serve /metrics on this port (ONDERWIJSREGIO_METRICS_TOKEN)"
    )
    worker.add_argument("--metrics-host", default="127.0.0.1")
    worker.set_defaults(run=_worker)

    migrate = commands.add_parser("migrate", help="apply migrations and exit")
    migrate.set_defaults(run=_migrate)

    admin = commands.add_parser("admin", help="administration").add_subparsers(
        required=True, metavar="action"
    )
    create_key = admin.add_parser("create-key", help="create an admin key; prints only the key")
    create_key.add_argument("--name", required=True)
    create_key.set_defaults(run=_create_admin_key)
    create_region = admin.add_parser(
        "create-region", help="create a region; prints its id, then a region key"
    )
    create_region.add_argument("--name", required=True)
    create_region.set_defaults(run=_create_region)
    return parser


# Tells the processes of `serve --processes N` (started afresh by uvicorn) what the command line said.
_NO_WORKER_FLAG = "_ONDERWIJSREGIO_SERVE_NO_WORKER"


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    asyncio.run(_prepare_for_serving(settings))
    settings.cursor_secret()  # made here when it is to be generated, so every process reads the same
    served = {"host": args.host, "port": args.port, "access_log": False, "log_config": None}
    if args.processes == 1:
        from onderwijsregio.app import create_app

        app = create_app(settings, run_workers=not args.no_worker, long_running=True)
        uvicorn.run(app, proxy_headers=False, **served)
        return 0
    os.environ[_NO_WORKER_FLAG] = "1" if args.no_worker else ""
    uvicorn.run(
        "onderwijsregio.cli:serving_app", factory=True, workers=args.processes, proxy_headers=False, **served
    )
    return 0


def serving_app() -> FastAPI:
    """One of the processes of `serve --processes N`: the settings from the same environment."""
    from onderwijsregio.app import create_app

    settings = get_settings()
    configure_logging(settings.env)
    return create_app(settings, run_workers=not os.environ.get(_NO_WORKER_FLAG), long_running=True)


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    metrics_at = (args.metrics_host, args.metrics_port) if args.metrics_port is not None else None
    asyncio.run(_work_until_stopped(settings, metrics_at))
    return 0


class _MetricsServer(uvicorn.Server):
    """uvicorn beside the worker's own tasks: the worker's signal handlers stop both."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _work_until_stopped(settings: Settings, metrics_at: tuple[str, int] | None = None) -> None:
    """A standalone worker: the engine's tasks until SIGTERM or SIGINT, then a clean stop."""
    from onderwijsregio.app import make_context, outboxes
    from onderwijsregio.heap import freeze_after_start_up
    from onderwijsregio.registry import register_operations

    register_operations()
    context = make_context(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    context.engine.start(max(1, settings.workers), outboxes(context))
    freeze_after_start_up()
    log.info("worker running with %d worker tasks", max(1, settings.workers))
    metrics = _serve_metrics(context, metrics_at) if metrics_at else None
    try:
        await stop.wait()
    finally:
        if metrics is not None:
            metrics[0].should_exit = True
            await metrics[1]
        await context.engine.stop()
        await context.database.dispose()


def _serve_metrics(context: AppContext, at: tuple[str, int]) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    from onderwijsregio.metrics.routes import metrics_app

    config = uvicorn.Config(
        metrics_app(context), host=at[0], port=at[1], access_log=False, log_config=None, lifespan="off"
    )
    server = _MetricsServer(config)
    return server, asyncio.create_task(server.serve())


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    async def run() -> None:
        async with _migrated_database(settings):
            pass

    asyncio.run(run())
    log.info("migrations applied")
    return 0


def _create_admin_key(settings: Settings, args: argparse.Namespace) -> int:
    async def run() -> str:
        async with _migrated_database(settings) as sessions, sessions() as session, session.begin():
            _key, secret = await api_key_service.create_admin_key(session, args.name)
            return secret

    print(asyncio.run(run()))
    return 0


def _create_region(settings: Settings, args: argparse.Namespace) -> int:
    async def run() -> tuple[str, str]:
        async with _migrated_database(settings) as sessions, sessions() as session, session.begin():
            region = await region_service.create_region(session, RegionCreate(name=args.name))
            new_key = NewKey("region", region.id, "initial key", ALL_PERMISSIONS)
            _key, secret = await api_key_service.issue_key(session, new_key)
            return region.id, secret

    region_id, secret = asyncio.run(run())
    print(region_id)
    print(secret)
    return 0


@contextlib.asynccontextmanager
async def _migrated_database(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """The database, migrated; the start-up lock stays held while the caller works (short jobs only)."""
    engine = make_engine(settings.database_url, hide_parameters=True)
    try:
        async with startup_lock(engine):
            await apply_migrations(engine)
            yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


async def _prepare_for_serving(settings: Settings) -> None:
    """Migrations, then a first admin key when none is active: both under the start-up lock."""
    async with _migrated_database(settings) as sessions:
        async with sessions() as session, session.begin():
            if await api_key_service.has_active_admin_key(session):
                return
            _key, secret = await api_key_service.create_admin_key(session, "initial admin key")
        # Written once the key is committed, still under the lock: the file never holds a dead key.
        path = _write_secret_file(settings.var_dir / "initial-admin-key", secret)
    # The key itself never goes to a log: only where to find it.
    log.warning("no active admin key existed; created one and wrote it to %s (mode 0600)", path)


def _write_secret_file(path: Path, secret: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    return path.resolve()


if __name__ == "__main__":
    sys.exit(main())
