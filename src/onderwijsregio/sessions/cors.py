"""CORS for the candidate session routes (contract §3.5): browsers of a region's `allowedOrigins` only.

An answer on a session route names the caller's origin when the session's region allows it (see
`SessionAccess`). A preflight carries no token, so it cannot tell the region: it is answered for an
origin that some region allows; the real request then still needs that region's allowance to be read.
"""

from __future__ import annotations

import re

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from onderwijsregio.context import app_context
from onderwijsregio.regions.models import Region

SESSION_ROUTES = re.compile(r"^/api/(v2|sandbox)/auth/candidates/session(/.*)?$")
ALLOWED_METHODS = "GET, PATCH, DELETE"
ALLOWED_HEADERS = "authorization, content-type, idempotency-key"
PREFLIGHT_SECONDS = "600"


class SessionPreflightMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan events pass untouched
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        origin = request.headers.get("origin")
        is_preflight = (
            request.method == "OPTIONS"
            and origin is not None
            and "access-control-request-method" in request.headers
            and SESSION_ROUTES.match(scope["path"]) is not None
        )
        if not is_preflight:
            await self.app(scope, receive, send)
            return
        assert origin is not None
        response = Response(status_code=204, headers={"vary": "Origin"})
        if await _allowed_somewhere(request, origin):
            response.headers.update(
                {
                    "access-control-allow-origin": origin,
                    "access-control-allow-methods": ALLOWED_METHODS,
                    "access-control-allow-headers": ALLOWED_HEADERS,
                    "access-control-max-age": PREFLIGHT_SECONDS,
                }
            )
        await response(scope, receive, send)


async def _allowed_somewhere(request: Request, origin: str) -> bool:
    async with app_context(request).sessions() as session:
        for origins in await session.scalars(select(Region.allowed_origins)):
            if origin in origins:
                return True
    return False
