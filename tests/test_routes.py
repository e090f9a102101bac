"""A write route the tests add to the app: it submits `test.record` mutations like a domain would."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Request
from starlette.responses import Response

from onderwijsregio.auth.dependencies import RegionWrite
from onderwijsregio.auth.schemas import RegionContext
from onderwijsregio.dependencies import DbSession
from onderwijsregio.engine.accept import Submission, WriteOptions
from onderwijsregio.engine.http import accept_write, write_options
from tests import engine_ops

TEST_WRITES = "/api/v2/test-records"


def add_test_write_route(app: FastAPI) -> None:
    @app.post(TEST_WRITES, status_code=202, tags=["Mutations"], summary="Test writes (tests only)")
    async def test_write(
        request: Request,
        caller: Annotated[RegionContext, Depends(RegionWrite)],
        session: DbSession,
        options: Annotated[WriteOptions, Depends(write_options)],
        items: Annotated[list[dict[str, Any]], Body(min_length=1, max_length=10)],
        together: bool = False,
    ) -> Response:
        operation = engine_ops.TOGETHER_OPERATION if together else engine_ops.OPERATION

        async def submission() -> Submission:
            indexed = [{**item, "index": index} for index, item in enumerate(items)]
            return Submission(operation, indexed, [])

        return await accept_write(request, caller, session, options, submission)
