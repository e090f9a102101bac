"""Operations routes at the server root (contract §3.9): health, readiness, docs, OpenAPI."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from datetime import timedelta
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from pydantic import BaseModel
from sqlalchemy import select, text
from starlette.responses import Response

from onderwijsregio.auth.dependencies import Public
from onderwijsregio.clock import utc_now
from onderwijsregio.context import AppContext, request_context
from onderwijsregio.engine.models import Mutation
from onderwijsregio.envelope import Envelope, JsonResponse, respond
from onderwijsregio.errors import ServiceUnavailable
from onderwijsregio.openapi_docs import error_responses

log = logging.getLogger(__name__)
router = APIRouter(tags=["Operations"], dependencies=[Depends(Public)])
DOCS_ASSETS = "/docs/assets"


def docs_assets() -> str:
    """Swagger UI's files as shipped in the fastapi-swagger package (a current release, OpenAPI 3.1)."""
    return str(resources.files("fastapi_swagger") / "resources")


# A queue whose oldest waiting mutation is older than the engine's longest stall is not healthy.
MAX_QUEUE_LAG = timedelta(minutes=10)


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    database: str
    queue: str
    rateLimits: str


@router.get("/health", summary="Liveness", response_model=Envelope[Health])
async def health(request: Request) -> Response:
    return respond(request, {"status": "ok"}, "Alive")


@router.get(
    "/health/ready",
    summary="Readiness: the database answers and the queue is moving",
    response_model=Envelope[Readiness],
    responses=error_responses(503),
)
async def ready(request: Request, context: Annotated[AppContext, Depends(request_context)]) -> Response:
    checks = {
        "database": await _check(_database_answers(context)),
        "queue": await _check(_queue_moves(context)),
        "rateLimits": await _check(context.limiter.healthy()),
    }
    if "not ok" in checks.values():
        issues = [{"path": [name], "code": state, "message": state} for name, state in checks.items()]
        raise ServiceUnavailable("Not ready", issues=issues)
    return respond(request, checks, "Ready")


async def _check(probe: Awaitable[bool]) -> str:
    try:
        return "ok" if await probe else "not ok"
    except Exception as error:  # any failure means "not ready"; the answer gives no details
        log.warning("readiness check failed: %s", type(error).__name__)
        return "not ok"


async def _database_answers(context: AppContext) -> bool:
    async with context.sessions() as session:
        answer: int | None = await session.scalar(text("SELECT 1"))
    return answer == 1


async def _queue_moves(context: AppContext) -> bool:
    async with context.sessions() as session:
        oldest = await session.scalar(
            select(Mutation.created_at)
            .where(Mutation.status == "queued")
            .order_by(Mutation.created_at)
            .limit(1)
            .execution_options(cross_region=True)  # the whole queue's health, no region's data
        )
    return oldest is None or utc_now() - oldest < MAX_QUEUE_LAG


@router.get("/openapi.json", summary="This API's OpenAPI document", include_in_schema=False)
async def openapi_document(request: Request) -> Response:
    document: dict[str, Any] = request.app.openapi()
    return JsonResponse(document)


@router.get("/docs", summary="Interactive API reference", include_in_schema=False)
async def docs() -> HTMLResponse:
    # Every script and style comes from this server: the reference works without internet.
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Onderwijsregio API v2",
        swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
        swagger_ui_parameters={"docExpansion": "list", "validatorUrl": None},
    )
