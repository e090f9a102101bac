"""`GET /metrics` in Prometheus's text format, for the API (`serve`) and for `worker --metrics-port`.

Not in the OpenAPI document: it is for the operator's scraper, not for API clients, and it answers in
Prometheus's format rather than the envelope (its errors are enveloped as usual).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from onderwijsregio.auth.dependencies import MetricsScrape
from onderwijsregio.context import AppContext, app_context
from onderwijsregio.envelope import respond_error
from onderwijsregio.errors import ApiError, NotFound
from onderwijsregio.metrics import service
from onderwijsregio.middleware import RequestContextMiddleware

router = APIRouter(tags=["Operations"], dependencies=[Depends(MetricsScrape)])


@router.get("/metrics", summary="This process's metrics (Prometheus)", include_in_schema=False)
async def metrics(context: Annotated[AppContext, Depends(app_context)]) -> Response:
    body = await service.exposition(context.sessions, context.clock())
    return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"cache-control": "no-store"})


def metrics_app(context: AppContext) -> FastAPI:
    """Only /metrics, for a standalone worker process, which serves no API but has figures to show."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.state.context = context
    app.include_router(router)

    async def api_error(request: Request, exc: Exception) -> Response:
        return respond_error(request, exc if isinstance(exc, ApiError) else NotFound("No such route"))

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(404, api_error)
    app.add_middleware(RequestContextMiddleware)
    return app
