"""The application factory: routes under /api/v2, operations at the root, one error renderer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from onderwijsregio import __version__
from onderwijsregio.api_keys import routes as api_key_routes
from onderwijsregio.api_keys.usage import KeyUsage
from onderwijsregio.attachments import routes as attachment_routes
from onderwijsregio.auth.dependencies import route_access
from onderwijsregio.candidates import routes as candidate_routes
from onderwijsregio.clock import utc_now
from onderwijsregio.config import Settings, get_settings
from onderwijsregio.context import AppContext
from onderwijsregio.cursors import CursorCodec
from onderwijsregio.db import make_engine, make_sessionmaker
from onderwijsregio.engine.outbox import retry_jitter
from onderwijsregio.engine.runtime import Engine
from onderwijsregio.engine.signing import SecretBox
from onderwijsregio.engine.worker import EngineTuning
from onderwijsregio.envelope import respond_error
from onderwijsregio.errors import (
    ApiError,
    BadRequest,
    InvalidJson,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
    issue,
)
from onderwijsregio.heap import freeze_after_start_up
from onderwijsregio.interactions import routes as interaction_routes
from onderwijsregio.metrics import routes as metrics_routes
from onderwijsregio.middleware import BodyLimitMiddleware, RequestContextMiddleware
from onderwijsregio.mutations import routes as mutation_routes
from onderwijsregio.openapi_docs import describe_access
from onderwijsregio.operations import routes as operation_routes
from onderwijsregio.outbound.urls import UrlPolicy
from onderwijsregio.ratelimit import RateLimiter
from onderwijsregio.regions import routes as region_routes
from onderwijsregio.sandbox import routes as sandbox_routes
from onderwijsregio.schema import routes as schema_routes
from onderwijsregio.sessions import routes as session_routes
from onderwijsregio.sessions.cors import SessionPreflightMiddleware
from onderwijsregio.sessions.mail import MailSender, SmtpServer
from onderwijsregio.storage.files import file_store
from onderwijsregio.validation import refuse_nul_characters
from onderwijsregio.webhooks import routes as webhook_routes
from onderwijsregio.webhooks.delivery import WebhookDispatcher

TAGS = [
    {"name": "Auth", "description": "Candidate verification codes and sessions (§3.5)."},
    {"name": "Regions", "description": "Your region, and its API keys (§3.6)."},
    {
        "name": "Admin",
        "description": "Platform administration with an admin key: regions, admin keys, queue.",
    },
    {"name": "Schema", "description": "The JSON Schema of this region's candidate payload (§3.1)."},
    {"name": "Candidates", "description": "People interested in working in education (§3.2)."},
    {"name": "Interactions", "description": "Contact moments with a candidate (§3.3)."},
    {"name": "Attachments", "description": "CVs and other documents (§3.4)."},
    {"name": "Webhooks", "description": "Signing secrets, event subscriptions and the event feed (§3.7)."},
    {"name": "Mutations", "description": "Accepted writes and their outcome (§2)."},
    {"name": "Sandbox", "description": "The separate sandbox data set (§3.8)."},
    {"name": "Operations", "description": "Health, readiness and this reference (§3.9)."},
]
DESCRIPTION = """
The Onderwijsregio API v2: candidates, interactions and CVs of Dutch education regions.

* Every answer is an envelope: `{ statusCode, message, data, meta: { sandboxEnabled, requestId } }`;
  errors add `error: { code, issues? }`.
* Authenticate with `x-api-key`. Admin keys act on a region's data with `x-region-id`.
* Sandbox: the same paths under `/api/sandbox/...`, or `x-api-sandbox: true`.
* Lists are cursor-paged: follow `meta.cursor` until it is `null`.
"""


def create_app(
    settings: Settings | None = None,
    *,
    run_workers: bool = True,
    clock: Callable[[], datetime] = utc_now,
    long_running: bool = False,
) -> FastAPI:
    """The app; `long_running` for a process that serves it until it stops (`serve`), whose start-up
    objects are then kept out of the garbage collector's way (heap.py). Not for tests, which make
    many apps in one process."""
    settings = settings or get_settings()
    app = FastAPI(
        title="Onderwijsregio API v2",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=_lifespan(settings, run_workers, clock, long_running),
        dependencies=[Depends(refuse_nul_characters)],
    )
    api_routers = (
        schema_routes.router,
        candidate_routes.router,
        attachment_routes.router,
        session_routes.router,
        interaction_routes.router,
        mutation_routes.router,
        sandbox_routes.router,
        webhook_routes.router,
        region_routes.router,
        region_routes.admin_router,
        api_key_routes.router,
        api_key_routes.admin_router,
        mutation_routes.admin_router,
    )
    for router in api_routers:
        app.include_router(router)
    app.include_router(operation_routes.router)
    app.include_router(metrics_routes.router)
    app.mount(
        operation_routes.DOCS_ASSETS,
        StaticFiles(directory=operation_routes.docs_assets()),
        name="docs-assets",
    )
    _install_error_handlers(app)
    app.add_middleware(SessionPreflightMiddleware)
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(RequestContextMiddleware)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _lifespan(
    settings: Settings, run_workers: bool, clock: Callable[[], datetime], long_running: bool
) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        context = make_context(settings, clock)
        app.state.context = context
        flusher = asyncio.create_task(context.key_usage.flush_forever(context.write_sessions))
        context.engine.start(settings.workers if run_workers else 0, outboxes(context))
        if long_running:
            freeze_after_start_up()
        try:
            yield
        finally:
            await context.engine.stop()
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
            await context.key_usage.flush(context.write_sessions)
            await context.limiter.aclose()
            await context.database.dispose()

    return lifespan


def outboxes(context: AppContext) -> list[Callable[[], Coroutine[Any, Any, None]]]:
    """The senders that run wherever the engine runs: the verification mail and webhook events."""
    settings, engine = context.settings, context.engine
    mail = MailSender(
        context.write_sessions,
        engine.box,
        SmtpServer.from_url(settings.smtp_url),
        settings.mail_from,
        engine.mail_waker,
        context.clock,
    )
    webhooks = WebhookDispatcher(
        context.write_sessions,
        engine.callbacks_waker,
        engine.box,
        context.url_policy,
        context.clock,
        retry_jitter,
    )
    return [mail.run_forever, webhooks.run_forever]


def make_context(settings: Settings, clock: Callable[[], datetime] = utc_now) -> AppContext:
    database = make_engine(settings.database_url, hide_parameters=True)
    sessions, write_sessions = make_sessionmaker(database), make_sessionmaker(database, write=True)
    policy = UrlPolicy.from_setting(settings.allow_http_urls, settings.url_allowlist)
    tuning = EngineTuning(
        lease=timedelta(seconds=settings.engine_lease_seconds),
        batch_size=settings.engine_batch_size,
        poll_seconds=settings.engine_poll_seconds,
        max_stall=timedelta(seconds=settings.engine_max_stall_seconds),
    )
    engine = Engine(
        settings.database_url,
        sessions,
        write_sessions,
        SecretBox(settings.cursor_secret()),
        policy,
        file_store(settings.storage_url, base=Path.cwd()),
        settings.wipe_at,
        tuning,
    )
    return AppContext(
        settings=settings,
        database=database,
        sessions=sessions,
        write_sessions=write_sessions,
        limiter=RateLimiter(settings.rate_limit_storage),
        cursors=CursorCodec(settings.cursor_secret()),
        key_usage=KeyUsage(),
        url_policy=policy,
        engine=engine,
        clock=clock,
    )


def _install_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return respond_error(request, exc)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 405:
            allowed = ", ".join(_methods_of_path(app, request.scope["path"]))
            return respond_error(request, MethodNotAllowed(headers={"allow": allowed}))
        return respond_error(request, _from_http_exception(exc))

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return respond_error(request, _from_validation_error(request, exc))

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)


def _from_http_exception(exc: StarletteHTTPException) -> ApiError:
    if exc.status_code == 404:
        return NotFound("No such route")
    if exc.status_code == 413:
        return PayloadTooLarge(str(exc.detail))
    error = ApiError(str(exc.detail))
    error.status_code, error.code = (
        exc.status_code,
        "bad_request" if exc.status_code < 500 else "internal_error",
    )
    return error


def _from_validation_error(request: Request, exc: RequestValidationError) -> ApiError:
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return InvalidJson()
    in_body = [e for e in errors if e["loc"] and e["loc"][0] == "body"]
    if in_body and not _is_json(request):
        return UnsupportedMediaType()
    issues = [
        issue([str(p) for p in e["loc"][1:]] or [str(e["loc"][0])], e["type"], e["msg"]) for e in in_body
    ]
    if in_body:
        return ValidationFailed(issues=issues)
    elsewhere = [issue([str(p) for p in e["loc"]], e["type"], e["msg"]) for e in errors]
    names = ", ".join(str(e["loc"][-1]) for e in errors)
    return BadRequest(f"Invalid query parameter or header: {names}", issues=elsewhere)


def _is_json(request: Request) -> bool:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        document = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
        )
        for route in api_routes(app):
            if route.include_in_schema:
                describe_access(document, route, route_access(route))
        app.openapi_schema = document
    return app.openapi_schema


def _methods_of_path(app: FastAPI, path: str) -> list[str]:
    """The methods of the documented path this request names (Starlette names only the first matching
    route's). A path written out in full, such as /regions/me, is its own path: the methods of
    /regions/{regionId}, whose pattern it happens to match, are not its methods."""
    matching = [route for route in api_routes(app) if route.path_regex.match(path)]
    fewest = min((route.path_format.count("{") for route in matching), default=0)
    return sorted(
        {m for route in matching if route.path_format.count("{") == fewest for m in route.methods or ()}
    )


def api_routes(app: FastAPI) -> list[APIRoute]:
    """Every API route, looking through included routers."""
    contexts = iter_route_contexts(app.routes)
    return [context.original_route for context in contexts if isinstance(context.original_route, APIRoute)]
