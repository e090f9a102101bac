"""`python -m tests.serve_with_test_route PORT`: the real server plus the tests' write route, no workers."""

from __future__ import annotations

import asyncio
import sys

import uvicorn

from onderwijsregio.app import create_app
from onderwijsregio.cli import _migrated_database
from onderwijsregio.config import get_settings
from tests import engine_ops  # noqa: F401 - registers test.record
from tests.test_routes import add_test_write_route


async def _migrate() -> None:
    async with _migrated_database(get_settings()):
        pass


def main() -> None:
    asyncio.run(_migrate())
    app = create_app(get_settings(), run_workers=False)
    add_test_write_route(app)
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=False, log_config=None)


if __name__ == "__main__":
    main()
