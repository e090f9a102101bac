"""What the benchmark runs inside the server process: the app with the tests' write route.

Importing this module registers the tests' Mutation Engine operation `test.record` (by importing
`tests.engine_ops`, whose items append rows to its own table `engine_test_effects`). `serve()` builds
the project's app with `onderwijsregio.app.create_app`, adds `POST /api/v2/test-records` with the
tests' own code (`tests.test_routes.add_test_write_route`) and runs uvicorn the way `onderwijsregio
serve` does. Nothing in the project is patched.

    python -c "import bench.bench_ops as b; b.serve(8000, run_workers=False)"

`create_tables()` creates the operation's table; the benchmark calls it before any run.
"""

from __future__ import annotations

import asyncio

import uvicorn

from onderwijsregio.cli import _prepare_for_serving
from onderwijsregio.config import ensure_private_dir, get_settings
from onderwijsregio.db import make_engine
from onderwijsregio.logs import configure_logging
from tests import engine_ops
from tests.test_routes import add_test_write_route


def serve(port: int, run_workers: bool = False, host: str = "127.0.0.1") -> None:
    """`onderwijsregio serve [--no-worker]`, plus the test write route (ONDERWIJSREGIO_* env applies)."""
    from onderwijsregio.app import create_app

    settings = get_settings()
    configure_logging(settings.env)
    ensure_private_dir(settings.var_dir)
    asyncio.run(_prepare_for_serving(settings))  # migrations under the start-up lock, as `serve` does
    app = create_app(settings, run_workers=run_workers)
    add_test_write_route(app)
    uvicorn.run(app, host=host, port=port, access_log=False, log_config=None, proxy_headers=False)


def create_tables() -> None:
    """The operation's own table (the project's migrations do not know it), in ONDERWIJSREGIO_DATABASE_URL."""
    asyncio.run(_create_tables(get_settings().database_url))


async def _create_tables(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        await engine_ops.create_tables(engine)
    finally:
        await engine.dispose()
